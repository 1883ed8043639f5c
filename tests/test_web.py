"""The web page, /metrics and health checks, served by a real daemon; a real headless Chromium.

Chromium and chromedriver are Debian's (``.ci/run`` installs them); the browser tests skip
where they are missing. The security tests need only the daemon.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import make_image
from tests.daemon_harness import REPO, Daemon, free_port, outputs, wait_until, write_config
from tests.test_web_metrics import SERIES, samples

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ARTIFACTS = REPO / "test-artifacts"


class Client:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None,
                method: str | None = None) -> tuple[int, dict, bytes]:
        h = {**({"Authorization": f"Bearer {self.token}"} if self.token else {}), **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def state(self) -> dict:
        return json.loads(self.request("/api/state")[2])

    def post(self, path: str, body: bytes, ctype: str, csrf: str | None) -> tuple[int, dict]:
        headers = {"Content-Type": ctype, **({"X-CSRF-Token": csrf} if csrf else {})}
        status, _, data = self.request(path, body, headers, "POST")
        return status, json.loads(data or b"{}")


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "nstdtestboundary"
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for field, filename, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                f"Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def served(tmp_path, thin_mat):
    """A daemon with its page on a free loopback port: (root, client, daemon)."""
    port = free_port()
    root = tmp_path / "nstd"
    cfg = write_config(root, thin_mat, http={"listen": f"127.0.0.1:{port}"}, limits={"input_bytes": 200_000,
                                                                                      "input_pixels": 200_000},
                       defaults={"size": 64, "iterations": 10, "coarse_iterations": 2, "seed": 1,
                                 "preview_every": 20})
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        yield root, Client(f"http://127.0.0.1:{port}"), d
        d.stop()


# --- security -------------------------------------------------------------------------------------


def test_health_metrics_and_a_strict_content_security_policy(served):
    root, client, _ = served
    assert client.request("/healthz")[0] == 200 and client.request("/readyz")[0] == 200
    status, headers, body = client.request("/")
    assert status == 200 and b"<script src=\"/static/app.js\"" in body and b"<script>" not in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    make_image(root / "inbox" / "m.style.png", seed=2)
    make_image(root / "inbox" / "m.content.png", seed=1)
    wait_until(lambda: (root / "outbox" / "m.report.yaml").exists(), 60, "a result")
    text = wait_until(lambda: (t := client.request("/metrics")[2].decode()) and 'outcome="done"} 1' in t and t,
                      10, "the job counted")
    assert client.request("/metrics")[1]["Content-Type"].startswith("text/plain; version=0.0.4")
    assert set(samples(text)) == SERIES  # every series the hand-written page served, and no other
    values = samples(text)
    assert values[("nstd_seconds_per_iteration", ())] > 0 and values[("nstd_resident_memory_bytes", ())] > 1e8
    assert values[("nstd_job_duration_seconds_count", ())] == 1


def test_a_post_without_the_csrf_token_is_refused(served):
    root, client, _ = served
    body, ctype = multipart({"params": "{}"}, [("content", "c.png", b"x"), ("style", "s.png", b"y")])
    assert client.post("/api/upload", body, ctype, None)[0] == 403
    assert client.post("/api/upload", body, ctype, "forged")[0] == 403
    assert client.post("/api/retry", b'{"name": "x"}', "application/json", None)[0] == 403
    csrf = client.state()["csrf"]
    status, _, _ = client.request("/api/retry", b'{"name": "x"}', {"X-CSRF-Token": csrf, "Origin": "http://evil.example",
                                                                    "Content-Type": "application/json"}, "POST")
    assert status == 403  # the right token from another site's page: refused too
    # a page on a rebound DNS name (evil.example → 127.0.0.1) is same-origin to the browser: refused by Host
    assert client.request("/api/state", headers={"Host": "evil.example:8750"})[0] == 401
    assert not list((root / "inbox").iterdir())


def test_uploads_over_the_limits_are_refused_with_the_reason(served, tmp_path):
    root, client, _ = served
    csrf = client.state()["csrf"]
    small = make_image(tmp_path / "c.png", (40, 30)).read_bytes()
    huge = make_image(tmp_path / "h.png", (600, 400), seed=3).read_bytes()  # 240 000 pixels > 200 000
    body, ctype = multipart({}, [("content", "h.png", huge), ("style", "s.png", small)])
    status, answer = client.post("/api/upload", body, ctype, csrf)
    assert status == 400 and "over the limit of 200,000" in answer["error"], answer
    body, ctype = multipart({}, [("content", "c.png", small)] + [("style", f"s{i}.png", small) for i in range(9)])
    status, answer = client.post("/api/upload", body, ctype, csrf)
    assert status == 400 and "9 style images is over the limit of 8" in answer["error"], answer
    body, ctype = multipart({}, [("content", "c.png", b"\0" * 2_000_000), ("style", "s.png", small)])
    status, answer = client.post("/api/upload", body, ctype, csrf)
    assert status == 413 and "over the limit" in answer["error"], answer
    body, ctype = multipart({"params": "size: 99999"}, [("content", "c.png", small), ("style", "s.png", small)])
    status, answer = client.post("/api/upload", body, ctype, csrf)
    assert status == 400 and "size" in answer["error"], answer
    assert not list((root / "inbox").iterdir())  # nothing half-made reached the inbox
    body, ctype = multipart({"params": "iterations: 3", "name": "../../escape"},
                            [("content", "c.png", small), ("style", "s.png", small)])
    status, answer = client.post("/api/upload", body, ctype, csrf)
    assert status == 201 and "/" not in answer["job"] and (root / "inbox" / answer["job"]).is_dir()


def test_no_request_reaches_outside_the_outbox_inbox_and_failed_folders(served, tmp_path):
    root, client, _ = served
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (root / "outbox" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "outbox" / "ok.txt").write_text("fine")
    (root / "outbox" / "leak.txt").symlink_to(secret)
    (root / "outbox" / "dirlink").symlink_to(tmp_path)
    assert client.request("/files/outbox/ok.txt")[2] == b"fine"
    for path in ("/files/outbox/../config.yaml", "/files/outbox/%2e%2e/config.yaml", "/files/outbox/%2E%2E%2Fconfig.yaml",
                 "/files/outbox//etc/passwd", "/files/outbox/%2Fetc%2Fpasswd", "/files/../../etc/passwd",
                 "/files/outbox/leak.txt", "/files/outbox/dirlink/secret.txt", "/files/outbox/sub/..%2F..%2Fconfig.yaml",
                 "/files/state/status", "/files/outbox/ok.txt%00.png", "/files/outbox/..\\config.yaml"):
        status, _, body = client.request(path)
        assert status == 404 and b"SECRET" not in body and b"paths:" not in body, path
    csrf = client.state()["csrf"]
    for name in ("../outbox", "/etc", "..%2F..", ""):
        status, _ = client.post("/api/retry", json.dumps({"name": name}).encode(), "application/json", csrf)
        assert status == 404, name


def test_a_token_is_required_off_loopback_and_then_enforced(tmp_path, thin_mat):
    cfg = write_config(tmp_path / "open", thin_mat, http={"listen": "0.0.0.0:8750"})
    run = subprocess.run([sys.executable, "-m", "nstd", "run", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "set" in run.stderr and "token" in run.stderr, run.stderr
    port = free_port()
    token = "s3cret-token-0123456789"
    cfg = write_config(tmp_path / "closed", thin_mat, http={"listen": f"127.0.0.1:{port}", "token": token})
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        base = f"http://127.0.0.1:{port}"
        assert Client(base).request("/api/state")[0] == 401
        assert Client(base).request("/metrics")[0] == 401
        assert Client(base).request("/healthz")[0] == 200  # a probe needs no secret, and learns none
        assert Client(base, token).request("/api/state")[0] == 200
        d.stop()


# --- a real browser ---------------------------------------------------------------------------------


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromium-driver are not installed (Debian packages; .ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield driver
    driver.quit()


def test_upload_progress_gallery_and_retry_in_a_real_browser(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    root, client, daemon = served
    content = make_image(tmp_path / "photo.png", (64, 48), seed=1)
    style = make_image(tmp_path / "painting.png", (40, 40), seed=2)
    browser.get(client.base + "/")
    wait_until(lambda: "pid" in browser.find_element(By.ID, "daemons").text, 20, "the page to load")
    # a job that fails at once, to retry from the page later
    (root / "inbox" / "broken.content.png").write_bytes(b"this is not a picture")
    (root / "inbox" / "broken.style.png").write_bytes(style.read_bytes())
    # upload a long enough job through the form
    browser.find_element(By.NAME, "content").send_keys(str(content))
    browser.find_element(By.NAME, "style").send_keys(str(style))
    browser.find_element(By.NAME, "params").send_keys("solver: origin\nscales: [1.0]\niterations: 1500\n")
    browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()
    wait_until(lambda: "Queued as photo" in browser.find_element(By.ID, "upload-result").text, 20, "the upload")

    def progress() -> float:  # read in one script: the page redraws every two seconds
        return float(browser.execute_script("const b = document.getElementById('progress'); return b ? b.value : -1"))

    first = wait_until(lambda: (v := progress()) > 0 and v, 60, "a progress bar")
    later = wait_until(lambda: (v := progress()) > first and v, 60, "the bar to advance")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web-mid-job.png"))
    assert later > first and "iteration" in browser.find_element(By.ID, "progress-text").text
    # the result appears in the gallery and opens
    href = wait_until(lambda: browser.execute_script(
        "const a = [...document.querySelectorAll('a.result-link')].find(a => a.href.includes('photo'));"
        "if (a) { a.click(); return a.href; } return null;"), 120, "the result in the gallery, clicked")
    browser.switch_to.window(browser.window_handles[-1])
    wait_until(lambda: browser.current_url == href, 10, "the result to open")
    status, headers, body = client.request(href.removeprefix(client.base))
    assert status == 200 and headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
    browser.switch_to.window(browser.window_handles[0])
    # retry the failed job from the page
    wait_until(lambda: browser.execute_script(
        "const b = document.querySelector('button.retry[data-name=\"broken\"]'); if (b) b.click(); return !!b;"),
        60, "the failed job's Retry button, clicked")
    daemon.wait_log("job=broken put back into the inbox from the web page", 20)
    daemon.wait_log("job=broken claimed", 30)
    assert len(outputs(root)) == 1

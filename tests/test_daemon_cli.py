"""`nstd check`, `submit`, `status` against real files and a real daemon; the unit file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys


import pytest
import yaml

from tests.conftest import REPO, make_image
from tests.daemon_harness import Daemon, archived, wait_until, write_config

pytestmark = pytest.mark.e2e


def nstd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nstd", *args], capture_output=True, text=True, cwd=REPO)


def test_example_config_is_valid():
    run = nstd("check", "--config", str(REPO / "config.yaml"))
    assert run.returncode == 0, run.stderr
    assert "ok: config" in run.stdout


@pytest.mark.parametrize("change, needle", [
    ({"paths": {"outbox": "inbox/out"}}, "is inside paths.inbox"),
    ({"paths": {"state": "inbox"}}, "are the same folder"),
    ({"watch": {"setle_seconds": 3}}, "Did you mean 'settle_seconds'"),
    ({"defaults": {"pooling": "median"}}, "'pooling' = 'median' is not allowed"),
    ({"watch": {"mode": "inotify"}}, "choose auto, events, polling"),
    ({"colour": "blue"}, "unknown key 'colour'"),
    ({"output": {"umask": 1.5}}, "output.umask: must be a whole number"),
    ({"output": {"umask": "0999"}}, "not an octal mode"),
    ({"service": {"heartbeat_seconds": 0}}, "heartbeat_seconds: 0 is out of range"),
    ({"service": {"lease_timeout": 1, "heartbeat_seconds": 1}}, "at least twice heartbeat_seconds"),
    ({"output": {"group": "no-such-group-here"}}, "there is no group 'no-such-group-here'"),
    ({"limits": {"size": float("nan")}}, "limits.size: must be a whole number"),
    ({"weights": "/nonexistent/vgg19.h5"}, "is not a readable file"),
])
def test_check_refuses_unsafe_or_misspelt_configs(tmp_path, thin_mat, change, needle):
    cfg = write_config(tmp_path, change.pop("weights", thin_mat), **change)
    run = nstd("check", "--config", str(cfg))
    assert run.returncode == 1 and needle in run.stderr and "config.yaml" in run.stderr, run.stderr


def test_check_validates_job_files(tmp_path, thin_mat):
    cfg = write_config(tmp_path / "c", thin_mat)
    jobs = tmp_path / "jobs"
    make_image(jobs / "a.png")
    make_image(jobs / "b.png")
    (jobs / "good.yaml").write_text("content: a.png\nstyle: [{path: b.png, weight: 2}]\nsize: 64\n")
    (jobs / "typo.yaml").write_text("content: a.png\nstyle: b.png\nstyle_wieght: 3\n")
    (jobs / "out.yaml").write_text("content: /etc/passwd\nstyle: b.png\n")
    (jobs / "big.yaml").write_text("content: a.png\nstyle: b.png\nsize: 9000\n")
    run = nstd("check", "--config", str(cfg), *(str(jobs / n) for n in ("good.yaml", "typo.yaml", "out.yaml",
                                                                        "big.yaml")))
    assert run.returncode == 1
    assert "ok: job" in run.stdout and "good.yaml" in run.stdout
    assert "typo.yaml: unknown key 'style_wieght'. Did you mean 'style_weight'?" in run.stderr
    assert "out.yaml: 'content: /etc/passwd' leaves the job's folder" in run.stderr
    assert "size 9000 is over the limit of 256" in run.stderr


def test_submit_then_status_shows_the_running_job(tmp_path, thin_mat):
    cfg = write_config(tmp_path, thin_mat, service={"checkpoint_every": 100})
    content = make_image(tmp_path / "src" / "photo.png", (48, 40), seed=1)
    style = make_image(tmp_path / "src" / "art.png", seed=2)
    assert nstd("status", "--config", str(cfg)).returncode == 3  # nothing running yet
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        run = nstd("submit", str(content), str(style), "--config", str(cfg), "--name", "viasubmit",
                   "--set", "solver=origin", "--set", "scales=[1.0]", "--set", "iterations=2500",
                   "--set", "size=64")
        assert run.returncode == 0, run.stderr
        def running() -> dict | None:
            daemons = json.loads(nstd("status", "--config", str(cfg), "--json").stdout)["daemons"]
            return daemons[0] if daemons and (daemons[0].get("current") or {}).get("loss") else None

        wait_until(running, 60, "status with the running job's loss")
        text = nstd("status", "--config", str(cfg)).stdout
        assert "running: viasubmit" in text and "ETA" in text
        data = json.loads(nstd("status", "--config", str(cfg), "--json").stdout)
        cur = data["daemons"][0]["current"]
        assert cur["name"] == "viasubmit" and cur["iterations"] == 2500 and data["daemons"][0]["state"] == "ready"
        wait_until(lambda: (tmp_path / "outbox" / "viasubmit.png").exists(), 120, "the submitted job")
        d.stop()
    report = yaml.safe_load((tmp_path / "outbox" / "viasubmit.report.yaml").read_text())
    assert report["parameters"]["iterations"] == 2500 and report["job"]["form"] == "folder"
    assert archived(tmp_path / "archive" / "viasubmit") == ["viasubmit"]
    assert not [p for p in (tmp_path / "inbox").iterdir()]


def test_submit_rejects_bad_parameters_without_touching_the_inbox(tmp_path, thin_mat):
    cfg = write_config(tmp_path, thin_mat)
    img = make_image(tmp_path / "p.png")
    run = nstd("submit", str(img), str(img), "--config", str(cfg), "--set", "iterations=-3")
    assert run.returncode == 2 and "iterations" in run.stderr
    assert not (tmp_path / "inbox").exists() or not list((tmp_path / "inbox").iterdir())


def test_unit_file_verifies():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs it)")
    run = subprocess.run(["systemd-analyze", "verify", str(REPO / "systemd" / "nstd.service")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    unit = (REPO / "systemd" / "nstd.service").read_text()
    for needle in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=nstd", "UMask=", "NoNewPrivileges=yes",
                   "ProtectSystem=strict", "ReadWritePaths=", "PrivateTmp=yes"):
        assert needle in unit


def test_memory_limit_accepts_sizes(tmp_path, thin_mat):
    from nstd import config

    cfg = config.load(write_config(tmp_path, thin_mat, limits={"memory": "1.5G"}))
    assert cfg.limits.memory == int(1.5 * 2**30)
    run = nstd("check", "--config", str(write_config(tmp_path / "b", thin_mat, limits={"memory": "lots"})))
    assert run.returncode == 1 and "not a size like 16G" in run.stderr


def test_the_queue_section_is_checked(tmp_path, thin_mat):
    from nstd import config

    cfg = config.load(write_config(tmp_path, thin_mat, queue={"backend": "redis", "url": "redis://q.lan:6379/2"}))
    assert (cfg.queue.backend, cfg.queue.url, cfg.queue.prefix) == ("redis", "redis://q.lan:6379/2", "nstd")
    for bad, message in (({"backend": "zeromq"}, "choose local, redis"),
                         ({"url": "http://q.lan"}, "must be a Redis URL"),
                         ({"prefix": "a b"}, "letters, digits")):
        with pytest.raises(config.ConfigError, match=message):
            config.load(write_config(tmp_path / "x", thin_mat, queue=bad))

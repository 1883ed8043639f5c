"""The daemon's own web page, ``/metrics`` and health checks (``http.listen`` in the config).

The standard library's threaded HTTP server, on its own threads in the daemon's process:
a page polled by a few people every two seconds needs no framework, and serving reads
only the status board, small files and the metrics, so it never waits on the optimiser.

Every request is an attacker's until shown otherwise:
* on any address but loopback a token is required (``Authorization: Bearer`` or a cookie
  set by ``/?token=``); without one, only loopback Host names are served (DNS rebinding);
  health checks answer without it and say nothing private;
* POSTs need the page's CSRF token in ``X-CSRF-Token`` and, when the browser sends one, an
  ``Origin`` naming this server;
* files are served only from the outbox, failed and archive folders, by a path that must
  resolve inside them with no link on the way, as regular files read without following links;
* uploads obey ``limits`` (bytes, pixels, count) before anything reaches the inbox;
* every response carries a strict Content-Security-Policy (no inline script, no other origin).
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import json
import logging
import mimetypes
import os
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

from nstd.spool import jobs, outbox
from nstd.config import Config
from nstd.engine import memory
from nstd.errors import NstdError
from nstd.web.metrics import CONTENT_TYPE, Metrics, Scrape
from nstd.daemon.status import StatusBoard, read_all
from nstd.spool.submit import MAX_STYLES, submit
from nstd.untrusted import UnsafeInput, read_regular

log = logging.getLogger("nstd")
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"/": "index.html", "/static/app.js": "app.js", "/static/style.css": "style.css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
GALLERY = 24  # recent results on the page


class WebServer:
    """Serves one daemon's page; reads what the daemon's roles publish, owns nothing of theirs."""

    def __init__(self, config: Callable[[], Config], board: StatusBoard, metrics: Metrics,
                 alive: Callable[[], bool], ready: Callable[[], bool]) -> None:
        self.config, self.board, self.metrics, self.alive, self.ready = config, board, metrics, alive, ready
        metrics.read_scrape_from(self.scrape)
        self.csrf = secrets.token_urlsafe(32)
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        host, _, port = self.config().http.listen.rpartition(":")
        handler = type("Handler", (Handler,), {"web": self})
        self.httpd = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="nstd-web", daemon=True).start()
        log.info("web page on http://%s/", self.config().http.listen)

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    # --- what the page shows -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        cfg = self.config()
        daemons = read_all(cfg.paths.state / "status")
        for d in daemons:
            d["alive"], d["liveness"] = jobs.daemon_liveness(d, cfg.service.lease_timeout)
        own = self.board.snapshot()
        current = own.get("current")
        if current:
            preview = outbox.preview_of(cfg, current["name"])
            current = {**current, "preview": _url("outbox", preview, cfg) if preview.exists() else None}
        return {"csrf": self.csrf, "daemons": [{k: d.get(k) for k in ("host", "pid", "state", "device", "alive",
                                                                       "liveness")} for d in daemons],
                "current": current, "queue": own["queue"], "queue_length": own["queue_length"],
                "waiting": own["waiting"], "fleet": own.get("fleet"), "gallery": self.gallery(cfg),
                "failed": self.failed(cfg)}

    def gallery(self, cfg: Config) -> list[dict[str, Any]]:
        reports = sorted(cfg.paths.outbox.rglob("*.report.yaml"), key=_mtime, reverse=True)[:GALLERY]
        out = []
        for path in reports:
            report = _yaml(path, cfg)
            image = Path(str(report.get("output") or ""))
            inputs = report.get("inputs") or {}
            styles = [s.get("path") for s in inputs.get("styles") or [] if isinstance(s, dict)]
            out.append({"name": path.name.removesuffix(".report.yaml"), "image": _url("outbox", image, cfg),
                        "report": _url("outbox", path, cfg), "finished": _mtime(path),
                        "content": _url("archive", Path(str((inputs.get("content") or {}).get("path"))), cfg),
                        "styles": [_url("archive", Path(str(s)), cfg) for s in styles]})
        return out

    def failed(self, cfg: Config) -> list[dict[str, Any]]:
        errors = sorted(cfg.paths.failed.rglob("error.yaml"), key=_mtime, reverse=True)[:GALLERY]
        out = []
        for path in errors:
            error = _yaml(path, cfg)
            name = str(path.parent.relative_to(cfg.paths.failed))
            out.append({"name": name, "message": str(error.get("message", ""))[:500], "phase": error.get("phase"),
                        "what_to_do": error.get("what_to_do"), "error": _url("failed", path, cfg),
                        "retry": bool(error.get("inputs"))})
        return out

    def scrape(self) -> Scrape:
        """The queue and the memory as /metrics shows them, read at each scrape."""
        snap = self.board.snapshot()
        arrived = [q.get("arrived") for q in snap["queue"] if q.get("arrived")]
        oldest = time.time() - min(arrived) if arrived else None
        return Scrape(snap["queue_length"], oldest, memory.rss())

    def metrics_text(self) -> str:
        return self.metrics.render()


class Handler(BaseHTTPRequestHandler):
    web: WebServer
    server_version = "nstd"
    sys_version = ""

    def log_message(self, fmt: str, *args: Any) -> None:  # access logs would drown the journal
        pass

    # --- answers -------------------------------------------------------------------------------

    def send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": ctype, "Content-Length": str(len(body)), "Content-Security-Policy": CSP,
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Cache-Control": "no-store", **(extra or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, data: Any) -> None:
        self.send(status, json.dumps(data, default=str).encode(), "application/json")

    def refuse(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    # --- who may ask ---------------------------------------------------------------------------

    def authorised(self) -> bool:
        token = self.web.config().http.token
        if not token:  # loopback only: refuse other Host names, or a rebound DNS name could read the page
            port = self.web.config().http.listen.rpartition(":")[2]
            return self.headers.get("Host", "") in {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        cookie = dict(c.strip().split("=", 1) for c in self.headers.get("Cookie", "").split(";") if "=" in c)
        return any(hmac.compare_digest(x.encode(), token.encode()) for x in (given, cookie.get("nstd_token", "")))

    def same_origin(self) -> bool:
        sent = self.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent.encode(), self.web.csrf.encode()):
            return False
        origin = self.headers.get("Origin")
        return origin is None or urllib.parse.urlsplit(origin).netloc == self.headers.get("Host")

    # --- routes --------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz":
            ok = self.web.alive()
            return self.send(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
        if url.path == "/readyz":
            ok = self.web.ready()
            return self.send(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
        query = urllib.parse.parse_qs(url.query)
        token = self.web.config().http.token
        if url.path == "/" and token and "token" in query:  # a bookmarkable login: the token becomes a cookie
            if not hmac.compare_digest(query["token"][0].encode(), token.encode()):
                return self.refuse(401, "wrong token")
            return self.send(303, b"", "text/plain", {"Location": "/",
                                                      "Set-Cookie": f"nstd_token={token}; HttpOnly; "
                                                                    "SameSite=Strict; Path=/"})
        if not self.authorised():
            return self.refuse(401, "this server needs its token: open /?token=… or send Authorization: Bearer")
        if url.path in ASSETS:
            name = ASSETS[url.path]
            return self.send(200, (STATIC / name).read_bytes(), mimetypes.guess_type(name)[0] or "text/plain")
        if url.path == "/api/state":
            return self.send_json(200, self.web.state())
        if url.path == "/metrics":
            return self.send(200, self.web.metrics_text().encode(), CONTENT_TYPE)
        if url.path.startswith("/files/"):
            return self.file(url.path)
        self.refuse(404, "no such page")

    def file(self, raw: str) -> None:
        cfg = self.web.config()
        area, _, rel = urllib.parse.unquote(raw.removeprefix("/files/")).partition("/")
        root = _areas(cfg).get(area)
        path = _inside(root, rel) if root is not None else None
        if path is None:
            return self.refuse(404, "no such file")
        try:
            data = read_regular(path, 2**31, "file")
        except (UnsafeInput, NstdError, OSError):
            return self.refuse(404, "no such file")
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype not in ("image/png", "image/jpeg", "image/webp", "image/tiff", "image/gif", "image/bmp"):
            ctype = "text/plain; charset=utf-8"  # reports, logs, error records: shown, never run
        self.send(200, data, ctype)

    def do_POST(self) -> None:
        if not self.authorised():
            return self.refuse(401, "this server needs its token")
        if not self.same_origin():
            return self.refuse(403, "missing or wrong CSRF token: reload the page and try again")
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/upload":
            return self.upload()
        if url.path == "/api/retry":
            return self.retry()
        self.refuse(404, "no such action")

    def body(self, most: int) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.refuse(411, "a Content-Length is required")
            return None
        if length > most:
            left = length if length <= 4 * most else 0  # read a modest excess so the client sees the answer
            while left > 0:
                left -= len(self.rfile.read(min(left, 1 << 20)) or b"\0" * left)
            self.refuse(413, f"the upload is {length:,} bytes, over the limit of {most:,} "
                             f"(limits.input_bytes per image, {MAX_STYLES} styles at most)")
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def upload(self) -> None:
        cfg = self.web.config()
        data = self.body((MAX_STYLES + 1) * cfg.limits.input_bytes + cfg.limits.yaml_bytes)
        if data is None:
            return
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode() + data)
        if not message.is_multipart():
            return self.refuse(400, "send the job as multipart/form-data")
        files: dict[str, list[tuple[str, bytes]]] = {}
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            name, filename = part.get_param("name", header="content-disposition"), part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename:
                files.setdefault(str(name), []).append((Path(filename).name, payload))
            else:
                fields[str(name)] = payload.decode("utf-8", "replace")
        try:
            raw = yaml.safe_load(fields.get("params") or "{}") or {}
            if not isinstance(raw, dict):
                raise NstdError("parameters must be YAML keys and values, e.g. 'strength: 0.6'")
            if len(files.get("content", [])) != 1:
                raise NstdError("choose exactly one content image")
            name = fields.get("name") or Path(files["content"][0][0]).stem
            target = submit(cfg, name, files["content"][0], files.get("style", []), raw)
        except (NstdError, yaml.YAMLError) as exc:
            return self.refuse(400, str(exc))
        log.info("job=%s uploaded through the web page", target.name)
        self.send_json(201, {"job": target.name})

    def retry(self) -> None:
        data = self.body(4096)
        if data is None:
            return
        cfg = self.web.config()
        try:
            name = str(json.loads(data or b"{}").get("name", ""))
        except (ValueError, AttributeError):
            return self.refuse(400, "send {\"name\": …}")
        folder = _inside(cfg.paths.failed, name)
        if folder is None or folder.is_symlink() or not (folder / "error.yaml").is_file():
            return self.refuse(404, "no such failed job")
        try:
            moved = outbox.retry(cfg, name)
        except (OSError, NstdError) as exc:
            return self.refuse(409, str(exc))
        log.info("job=%s put back into the inbox from the web page", name)
        self.send_json(200, {"moved": [p.name for p in moved]})


def _inside(root: Path | None, rel: str) -> Path | None:
    """``root/rel`` if it names something inside ``root`` with no link or '..' on the way, else None."""
    if root is None or not rel or "\0" in rel or rel.startswith("/") or "\\" in rel:
        return None
    parts = Path(rel).parts
    if any(p in ("..", ".") for p in parts):
        return None
    path, here = root / rel, root
    for p in parts[:-1]:  # every folder on the way is a real folder, not a link
        here = here / p
        if here.is_symlink() or not here.is_dir():
            return None
    return path


def _areas(cfg: Config) -> dict[str, Path | None]:
    """The only folders the page serves files from (``/files/<area>/…``)."""
    return {"outbox": cfg.paths.outbox, "failed": cfg.paths.failed, "archive": cfg.paths.archive}


def _url(area: str, path: Path, cfg: Config) -> str | None:
    root = _areas(cfg)[area]
    try:
        rel = path.relative_to(root) if root is not None else None
    except ValueError:
        return None
    return None if rel is None else "/files/" + area + "/" + urllib.parse.quote(str(rel))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _yaml(path: Path, cfg: Config) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_regular(path, cfg.limits.yaml_bytes * 16, "report"))
    except (UnsafeInput, NstdError, OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def ready_check(cfg: Callable[[], Config], worker_ready: Callable[[], bool]) -> Callable[[], bool]:
    """Ready: the weights are loaded and the inbox can be listed."""
    def ready() -> bool:
        try:
            os.listdir(cfg().paths.inbox)
        except OSError:
            return False
        return worker_ready()

    return ready


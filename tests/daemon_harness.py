"""Run the real daemon as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nobody listens on now (for the servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(root: Path, weights: Path, **overrides: Any) -> Path:
    cfg = {
        "paths": {"inbox": "inbox", "outbox": "outbox", "failed": "failed", "archive": "archive", "state": "state"},
        "weights": str(weights),
        "defaults": {"size": 32, "iterations": 4, "coarse_iterations": 2, "seed": 1},
        "limits": {"size": 256},
        "watch": {"mode": "auto", "settle_seconds": 0.5, "rescan_seconds": 2, "poll_interval": 0.3,
                  "incomplete_timeout": 4},
        "service": {"checkpoint_every": 50, "heartbeat_seconds": 0.5, "lease_timeout": 5, "retries": 1,
                    "retry_backoff": 1},
    }
    cfg = deep_merge(cfg, overrides)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Daemon:
    """``nstd run`` in a subprocess, its stderr in a log file the test can read."""

    count = 0

    def __init__(self, config: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> None:
        """``prefix``: e.g. ``["setpriv", "--reuid=nobody", …]`` to run the daemon as another user."""
        Daemon.count += 1
        self.config = config
        self.log_path = config.parent / f"daemon-{Daemon.count}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "nstd", "run", "--config", str(config)],
                                     stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and text not in self.log:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before logging {text!r}:\n{self.log}")
            return text in self.log

        wait_until(seen, timeout, f"daemon log line {text!r}")

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log_file.close()

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self.log_file.closed:
            self.log_file.close()


def show_logs(daemons: list[Daemon], lines: int = 60) -> None:
    """Each daemon's last log lines on stdout, which pytest shows when the test fails."""
    for d in daemons:
        print(f"--- {d.log_path.name} (exit {d.proc.poll()})", *d.log.splitlines()[-lines:], sep="\n")


def outputs(root: Path, pattern: str = "*.png") -> list[Path]:
    return sorted((root / "outbox").rglob(pattern))


def archived(folder: Path) -> list[str]:
    """The inputs kept in an archive job folder (without nstd's hidden marker)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

"""What operators see: one board, one lock, every field the status file shows.

The scanner, the worker and the heartbeat write to it from their own threads; the
heartbeat turns it into ``state/status/HOST-PID.json`` for ``nstd status``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

#: Lists on the board are cut here: the status file never grows with the inbox.
LIST_MAX = 100


class StatusBoard:
    def __init__(self, host: str) -> None:
        self._lock = threading.Lock()
        self._host, self._started = host, time.time()
        self._state = "starting"
        self._device: str | None = None
        self._current: dict[str, Any] | None = None
        self._queue: list[dict[str, Any]] = []
        self._queue_length = 0
        self._waiting: list[dict[str, str]] = []
        self._done: deque = deque(maxlen=20)
        self._failed: deque = deque(maxlen=20)
        self._fleet: dict[str, Any] | None = None

    def set_state(self, state: str, device: str | None = None) -> None:
        with self._lock:
            self._state = state
            self._device = device or self._device

    def set_current(self, current: dict[str, Any] | None) -> None:
        """The running job (name, scale, iteration, loss, ETA…), or None when idle."""
        with self._lock:
            self._current = current

    def set_queue(self, queue: list[dict[str, Any]], length: int, waiting: list[dict[str, str]]) -> None:
        with self._lock:
            self._queue, self._queue_length, self._waiting = queue[:LIST_MAX], length, waiting[:LIST_MAX]

    def set_fleet(self, fleet: dict[str, Any] | None) -> None:
        """The shared queue as its server sees it (None: the local queue)."""
        with self._lock:
            self._fleet = fleet

    def job_done(self, name: str, output: str | None) -> None:
        with self._lock:
            self._current = None
            self._done.append({"name": name, "output": output, "at": time.time()})

    def job_failed(self, name: str, error: str, where: str) -> None:
        with self._lock:
            self._current = None
            self._failed.append({"name": name, "error": error[:500], "where": where, "at": time.time()})

    @property
    def queue_length(self) -> int:
        with self._lock:
            return self._queue_length

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"host": self._host, "pid": os.getpid(), "state": self._state, "started": self._started,
                    "updated": time.time(), "device": self._device, "current": self._current,
                    "queue": list(self._queue), "queue_length": self._queue_length, "waiting": list(self._waiting),
                    "recent_done": list(self._done), "recent_failed": list(self._failed),
                    "fleet": self._fleet}

    def to_json(self) -> bytes:
        return json.dumps(self.snapshot(), indent=1, default=str).encode()


def read_all(folder: Path) -> list[dict[str, Any]]:
    """Every daemon's last status in ``folder`` (unreadable files skipped)."""
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return out

"""The scanner: what in the inbox is a job yet, and which work folders were abandoned.

It owns the settle tracker, the decode verdicts and the list of refused claims; it hands
ready work to the worker through a :class:`Handoff` and tells the status board what waits
and why. It never claims or runs anything itself.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nstd.spool import jobs, retention
from nstd.config import Config
from nstd.errors import ImageError
from nstd.daemon.status import LIST_MAX, StatusBoard
from nstd.spool.workitem import lease_is_stale

log = logging.getLogger("nstd")
RETENTION_EVERY = 3600.0  # seconds between retention passes


@dataclass
class Pending:
    candidate: jobs.Candidate
    arrived: float  # wall clock
    expired: str | None = None  # why it fails without running: it waited too long, or can never run


class Handoff:
    """Ready work from the scanner to the worker: one lock over the queue and the orphans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._orphans: list[Path] = []
        self.ready = threading.Event()  # set when there may be work (or a stop or reload to notice)

    def publish(self, queue: list[Pending], orphans: list[Path]) -> None:
        with self._lock:
            self._queue, self._orphans = queue, orphans
        if queue or orphans:
            self.ready.set()

    def take(self) -> tuple[list[Path], list[Pending]]:
        """The orphans (now the caller's) and a copy of the queue, oldest first."""
        with self._lock:
            orphans, self._orphans = self._orphans, []
            return orphans, list(self._queue)

    def discard(self, p: Pending) -> None:
        with self._lock:
            if p in self._queue:
                self._queue.remove(p)


class Scanner:
    def __init__(self, config: Callable[[], Config], board: StatusBoard, handoff: Handoff,
                 held: Callable[[Path], bool], clock: Callable[[], float] = time.monotonic) -> None:
        """``config()``: the running config (a reload swaps it); ``held(work)``: the worker has it;
        ``clock``: monotonic seconds (a test passes its own)."""
        self.config, self.board, self.handoff, self.held, self.clock = config, board, handoff, held, clock
        self.settler = jobs.Settler()
        self.decode_verdicts: dict[str, tuple[tuple, str | None]] = {}
        self.unsettled = True  # some inbox job still changing: rescan often
        self.beat = time.monotonic()  # last time the loop came round (the watchdog's question)
        self._refused: dict[str, tuple] = {}  # candidate key -> its signature when its claim was refused
        self._refused_lock = threading.Lock()
        self._last_prune = -RETENTION_EVERY  # retention runs at start-up, then hourly
        self._yaml_memo: dict[Path, tuple] = {}  # each job YAML's names, read again only when it changes

    def refuse(self, c: jobs.Candidate) -> None:
        """The worker could not claim ``c``: leave it alone until its files change."""
        seen = self.settler.seen.get(c.key)
        with self._refused_lock:
            self._refused[c.key] = seen.sig if seen is not None else ()

    def _still_refused(self, c: jobs.Candidate) -> bool:
        with self._refused_lock:
            sig = self._refused.get(c.key)
            if sig is not None and sig != self.settler.seen[c.key].sig:
                del self._refused[c.key]  # changed since: try again
                sig = None
        return sig is not None

    def loop(self, now: float | None = None) -> None:
        """One scan: settle, check, hand ready jobs and orphans to the worker, tell the board."""
        cfg = self.config()
        refused: list[jobs.Refused] = []
        budget = jobs.ScanBudget(cfg.limits.scan_entries, cfg.limits.scan_depth, cfg.limits.scan_bytes,
                                 self._yaml_memo)
        candidates = jobs.discover(cfg.paths.inbox, cfg.limits.yaml_bytes, refused, budget)
        self._yaml_memo = budget.fresh
        now = self.clock() if now is None else now
        self.settler.update(candidates, now)
        pending, unsettled = [], False
        # what a scan skipped (folders, named NAME/) first: the list the status shows is cut at LIST_MAX
        waiting = [{"name": r.path, "reason": r.reason} for r in sorted(refused, key=lambda r: not r.path.endswith("/"))]
        for c in candidates:
            try:
                unsettled = self._sort(c, cfg, now, pending, waiting) or unsettled
            except Exception as exc:  # noqa: BLE001 - one odd job never stops the scan
                log.warning("job=%s cannot be looked at (%s: %s); the scan goes on", c.name, type(exc).__name__, exc)
                waiting.append({"name": str(c.rel / c.name), "reason": f"cannot be looked at ({type(exc).__name__})"})
        self.unsettled = unsettled
        self.decode_verdicts = {k: v for k, v in self.decode_verdicts.items() if k in self.settler.seen}
        pending.sort(key=lambda p: p.arrived)
        self.handoff.publish(pending, self._orphans(cfg))
        self.board.set_queue([{"name": p.candidate.name, "folder": str(p.candidate.rel), "form": p.candidate.form,
                               "arrived": p.arrived} for p in pending[:LIST_MAX]], len(pending), waiting)

    def _sort(self, c: jobs.Candidate, cfg: Config, now: float, pending: list[Pending],
              waiting: list[dict[str, str]]) -> bool:
        """Queue ``c``, or say in ``waiting`` why not; True while it may still be arriving."""
        where = str(c.rel / c.name)
        if not self.settler.settled(c, cfg.watch.settle_seconds, now):
            waiting.append({"name": where, "reason": "still changing (being copied?)"})
            return True
        if self._still_refused(c):
            waiting.append({"name": where, "reason": "cannot be claimed (see failed/)"})
            return False
        arrived, idle = self.settler.seen[c.key].arrived_wall, self.settler.idle(c, now)
        if c.broken:
            pending.append(Pending(c, arrived, c.broken))
            return False
        problem = c.waiting_for or self._undecodable(c, cfg)
        if problem is None:
            pending.append(Pending(c, arrived))
        elif idle > cfg.watch.incomplete_timeout:
            pending.append(Pending(c, arrived, f"incomplete: nothing changed for {idle:.0f}s "
                                               f"(watch.incomplete_timeout) and {problem}"))
        else:
            waiting.append({"name": where, "reason": problem})
            return True  # a stalled copy: count its idle time
        return False

    def _orphans(self, cfg: Config) -> list[Path]:
        """Work folders whose daemon is gone (or silent past the lease); stale half-made claims removed."""
        work_root = cfg.paths.state / "work"
        orphans = []
        for work in sorted(work_root.iterdir()) if work_root.is_dir() else []:
            if work.name.startswith("."):  # a claim being prepared, or a finished job being removed
                try:
                    age = time.time() - work.stat().st_mtime
                except FileNotFoundError:
                    continue  # its removal finished meanwhile
                if age > 2 * cfg.service.lease_timeout:
                    shutil.rmtree(work, ignore_errors=True)
                continue
            if self.held(work):
                continue
            if lease_is_stale(jobs.read_yaml(work / "lease.yaml"), cfg.service.lease_timeout, work):
                orphans.append(work)
        return orphans

    def _undecodable(self, c: jobs.Candidate, cfg: Config) -> str | None:
        """A settled image that does not decode may be a stalled copy: wait, don't take it.

        The verdict is kept until the job's files change: queued jobs are not decoded
        again on every scan while a long job runs.
        """
        sig = self.settler.seen[c.key].sig
        cached = self.decode_verdicts.get(c.key)
        if cached is None or cached[0] != sig:
            cached = (sig, decode_problem(c, cfg))
            self.decode_verdicts[c.key] = cached
        return cached[1]

    def run(self, stopping: threading.Event, wake: threading.Event, inbox_watch: Callable[[], Any]) -> None:
        """Scan when woken by the observer, while a job settles, and every rescan_seconds.

        Settled jobs waiting in the queue need no rescans: a change to them wakes us.
        """
        last_full = time.monotonic()
        while not stopping.is_set():
            cfg = self.config()
            woken = wake.wait(timeout=min(cfg.watch.settle_seconds / 2, 1.0) if self.unsettled else 1.0)
            wake.clear()
            self.beat = time.monotonic()
            watch = inbox_watch()
            if watch is not None:
                watch.check()
            if time.monotonic() - self._last_prune >= RETENTION_EVERY:
                self._last_prune = time.monotonic()
                retention.prune(cfg.paths.outbox, cfg.paths.archive, cfg.paths.failed, cfg.retention.days,
                                cfg.retention.keep)
            if not (woken or self.unsettled or time.monotonic() - last_full >= cfg.watch.rescan_seconds):
                continue
            last_full = time.monotonic()
            try:
                self.loop()
            except Exception:  # noqa: BLE001 - a scan failure must not kill the service
                log.exception("scanning %s failed; will try again", cfg.paths.inbox)


def decode_problem(c: jobs.Candidate, cfg: Config) -> str | None:
    """Why a settled job's image cannot be taken yet (truncated: maybe still copying), else None."""
    for f in c.files:
        if f.suffix.lower() in jobs.VIDEO_EXTS:  # a clip: its header and first frame (nstd/video)
            from nstd.video.clip import Clip, ClipLimits

            try:
                Clip(f, ClipLimits.of(cfg.limits)).close()
            except ImageError as exc:
                if exc.arriving:
                    return f"{f.name} does not decode yet ({exc})"
            except Exception:  # noqa: BLE001 - the worker fails it with the reason
                pass
            continue
        if f.suffix.lower() in jobs.IMAGE_EXTS:
            try:
                jobs.load_inbox_image(f, cfg.limits)
            except ImageError as exc:
                if not exc.arriving:
                    return None  # certain from the bytes: the worker fails it at once with this message
                return f"{f.name} does not decode yet ({exc})"
            except Exception:  # noqa: BLE001 - a link, over a limit, or odd: the worker fails it with the reason
                return None
    return None

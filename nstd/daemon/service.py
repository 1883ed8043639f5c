"""``nstd run``: the long-running service around one resident engine.

The :class:`Daemon` is the arbiter: it loads the engine once, starts one object per role
and keeps nothing of theirs. Threads, each with one role:
  * worker (main thread, :class:`nstd.daemon.worker.Worker`): claims ready work, runs it, settles it;
  * scanner (:class:`nstd.daemon.scanner.Scanner`): settling, decode checks, orphaned work;
  * heartbeat: renews the worker's leases, writes the status file, feeds systemd's watchdog;
  * observer (:mod:`nstd.daemon.watch`): only wakes the scanner.
Signals only set flags: SIGTERM/SIGINT stop after checkpointing the running job; SIGHUP
reloads the config between jobs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nstd import config as config_mod
from nstd.spool import jobs, outbox
from nstd.atomic import write_bytes_atomic
from nstd.config import Config
from nstd.errors import ConfigError
from nstd.daemon.logs import JournalFormatter, on_journal
from nstd.daemon.notify import Notifier
from nstd.daemon.scanner import Handoff, Scanner
from nstd.daemon.status import StatusBoard
from nstd.web.metrics import Metrics
from nstd.web.server import WebServer, ready_check
from nstd.daemon.worker import Worker

log = logging.getLogger("nstd")


def setup_logging() -> None:
    """One line per event on stderr; under journald with priorities and no timestamps."""
    handler = logging.StreamHandler(sys.stderr)
    if on_journal():
        handler.setFormatter(JournalFormatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("nstd")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class Daemon:
    def __init__(self, cfg: Config, config_path: str | None = None, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.stopping = threading.Event()
        self.stop_signal = 0  # set by the signal handler; logged by note_stop()
        self._stop_logged = False
        self.reload_requested = threading.Event()
        self.wake = threading.Event()
        self.board = StatusBoard(jobs.host_name())
        self.handoff = Handoff()
        self.work_ready = self.handoff.ready
        self.scanner = Scanner(lambda: self.cfg, self.board, self.handoff,
                               lambda work: self.worker is not None and self.worker.holds(work))
        self.worker: Worker | None = None  # from load_engine(), once the engine is loaded
        self.metrics = Metrics()
        self.web: WebServer | None = None
        self.inbox_watch: Any = None  # nstd.daemon.watch.InboxWatch, from run()
        self.status_path = cfg.paths.state / "status" / f"{jobs.safe_name(jobs.host_name())}-{os.getpid()}.json"
        self._last_status_send = 0.0

    # --- start-up -------------------------------------------------------------------------

    def load_engine(self) -> None:
        from nstd.engine import Engine, load_weights

        t0 = time.monotonic()
        log.info("loading weights %s", self.cfg.weights)
        weights = load_weights(self.cfg.weights)
        engine = Engine(weights, memory_limit=self.cfg.limits.memory, compute=self.cfg.engine.compute,
                        compiler=self.cfg.engine.compiler)
        log.info("engine ready on %s in %.1fs (weights %s, %s, sha256 %s…)", engine.device,
                 time.monotonic() - t0, weights.source, weights.format, weights.sha256[:12])
        queue = None
        if self.cfg.queue.backend == "redis":
            from nstd.daemon.fleet import RedisQueue

            queue = RedisQueue(self.cfg, f"{jobs.host_name()}-{os.getpid()}")
            log.info("queue: redis at %s (prefix %s)", self.cfg.queue.url, self.cfg.queue.prefix)
        self.worker = Worker(lambda: self.cfg, engine, weights, self.board, self.handoff, self.scanner,
                             self.note_stop, self.set_status_line, self.write_status, queue=queue,
                             metrics=self.metrics)

    # --- threads ------------------------------------------------------------------------

    def heartbeat(self) -> None:
        interval = self.cfg.service.heartbeat_seconds
        wd = self.notifier.watchdog_interval()
        tick = min(interval, wd) if wd else interval
        last_lease = 0.0
        while not self.stopping.wait(timeout=tick):
            now = time.monotonic()
            if now - last_lease >= interval:
                last_lease = now
                self.worker.renew_leases()
                self.board.set_fleet(self.worker.queue.fleet())
                self.write_status()
            if wd and self.alive(wd * 2):
                self.notifier.send("WATCHDOG=1")

    def alive(self, stall: float) -> bool:
        """True only while every part is making progress: the systemd watchdog's question."""
        now = time.monotonic()
        observer = self.inbox_watch.observer if self.inbox_watch is not None else None
        observer_ok = observer is None or observer.is_alive()
        scanner_ok = now - self.scanner.beat < max(stall, self.cfg.watch.rescan_seconds + 30)
        worker_ok = self.worker is None or now - self.worker.beat < max(stall, 60.0)
        return observer_ok and scanner_ok and worker_ok

    # --- status ---------------------------------------------------------------------------

    def write_status(self) -> None:
        try:
            write_bytes_atomic(self.status_path, self.board.to_json())
            outbox.apply_output_mode(self.status_path, self.cfg)  # share users run `nstd status` too
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.status_path, exc)

    def set_status_line(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_status_send >= 1.0:
            self._last_status_send = now
            self.notifier.send(f"STATUS={text}")

    # --- the worker (main thread) -------------------------------------------------------------

    def run_forever(self) -> None:
        while not self.note_stop():
            if self.reload_requested.is_set():
                self.reload()
            try:
                busy = self.worker.loop(time.monotonic())
            except Exception:  # noqa: BLE001 - run_job returns every job's ending; this is a bug in ours
                log.exception("the worker hit an unexpected error; carrying on")
                busy = False
            if not busy:
                self.work_ready.wait(timeout=1.0)
                self.work_ready.clear()

    # --- signals and reload ------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: Any) -> None:
        """Only sets flags: logging or I/O here could deadlock with the interrupted code."""
        if signum == signal.SIGHUP:
            self.reload_requested.set()
            self.work_ready.set()
            return
        self.stop_signal = self.stop_signal or signum
        self.stopping.set()
        self.work_ready.set()
        self.wake.set()

    def note_stop(self) -> bool:
        """True once a stop was asked for; says so in the log the first time (outside the handler)."""
        if not self.stopping.is_set():
            return False
        if self.stop_signal and not self._stop_logged:
            self._stop_logged = True
            log.info("received %s: finishing the current step, saving a checkpoint, then exiting",
                     signal.Signals(self.stop_signal).name)
        return True

    def reload(self) -> None:
        """Apply a changed config; any failure keeps the running config, never the daemon's life."""
        self.reload_requested.clear()
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            new = config_mod.load(self.config_path) if self.config_path else self.cfg
            restart = {"paths", "weights", "queue", "http", "engine"}  # fixed while running
            kept = sorted(k for k in restart if getattr(new, k) != getattr(self.cfg, k))
            if kept:
                log.warning("config reloaded, but %s changes need a restart; keeping the running ones",
                            ", ".join(kept))
                new = dataclasses.replace(new, **{k: getattr(self.cfg, k) for k in restart})
            os.umask(new.output.umask)
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the daemon
            log.error("config reload failed, still running on the previous config: %s", exc)
            self.notifier.send("READY=1", "STATUS=config reload failed; running on the previous config")
            return
        self.cfg = new
        log.info("config reloaded from %s", self.config_path)
        self.notifier.send("READY=1", "STATUS=config reloaded")

    # --- main -------------------------------------------------------------------------------

    def run(self) -> int:
        from nstd.daemon.watch import InboxWatch

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        prepare(self.cfg, self.status_path.parent)
        if self.cfg.http.listen:
            wd = self.notifier.watchdog_interval()
            self.web = WebServer(lambda: self.cfg, self.board, self.metrics, lambda: self.alive(2 * wd if wd else 300),
                                 ready_check(lambda: self.cfg, lambda: self.worker is not None))
            self.web.start()
        self.load_engine()
        self.inbox_watch = InboxWatch(self.cfg.paths.inbox, self.cfg.watch.mode, self.cfg.watch.poll_interval,
                                      self.wake)
        self.scanner.loop()  # everything already waiting, before we say ready
        scan = threading.Thread(target=self.scanner.run, args=(self.stopping, self.wake, lambda: self.inbox_watch),
                                name="nstd-scanner", daemon=True)
        threads = [scan,
                   threading.Thread(target=self.heartbeat, name="nstd-heartbeat", daemon=True)]
        for t in threads:
            t.start()
        self.board.set_state("ready", self.worker.engine.device)
        self.write_status()
        self.notifier.send("READY=1", f"STATUS=ready; watching {self.cfg.paths.inbox}")
        log.info("ready: watching %s, results to %s", self.cfg.paths.inbox, self.cfg.paths.outbox)
        try:
            self.run_forever()
        finally:
            self.board.set_state("stopping")
            self.notifier.send("STOPPING=1", "STATUS=stopping")
            self.worker.release_all()
            self.stopping.set()
            self.wake.set()
            if self.inbox_watch is not None:
                self.inbox_watch.stop()
            if self.web is not None:
                self.web.stop()
            for t in threads:
                t.join(timeout=5)
            try:
                self.status_path.unlink()
            except OSError:
                pass
            log.info("stopped")
        return 0


def prepare(cfg: Config, status_folder: Path) -> None:
    """Create the daemon's folders and refuse set-ups that cannot be safe."""
    p = cfg.paths
    os.umask(cfg.output.umask)
    for folder in (p.inbox, p.outbox, p.failed, p.state, p.state / "work", status_folder,
                   *([p.archive] if p.archive else [])):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}. Create it and give the "
                              "service user write access.") from None
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"{folder} is not writable by this user (uid {os.getuid()}); fix its owner or "
                              "mode, or ReadWritePaths= in the unit.")
    if os.stat(p.inbox).st_dev != os.stat(p.state).st_dev:
        raise ConfigError(f"paths.state ({p.state}) must be on the same file system as paths.inbox "
                          f"({p.inbox}): jobs are claimed by an atomic rename between them. Put state on "
                          "the same share, e.g. a hidden folder beside the inbox.")


def run(config_path: str) -> int:
    setup_logging()
    cfg = config_mod.load(config_path)
    return Daemon(cfg, config_path).run()

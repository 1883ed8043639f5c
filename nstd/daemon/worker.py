"""The worker: claims ready work, runs it with :func:`nstd.daemon.runner.run_job`, applies the retry policy.

It owns the work folders it holds (the heartbeat renews their leases, the scanner leaves
them alone) and the jobs deferred for a retry. Every job's ending goes through
:meth:`Worker.settle`; nothing else moves a job to failed/ or schedules a retry.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from nstd.spool import jobs, outbox
from nstd.daemon import runner
from nstd.config import Config
from nstd.errors import is_internal_text, plain
from nstd.daemon.fleet import LocalQueue
from nstd.web.metrics import Metrics, iteration_timer
from nstd.daemon.runner import Hooks, Outcome, RetryPolicy
from nstd.daemon.scanner import Handoff, Scanner
from nstd.daemon.status import StatusBoard
from nstd.spool.workitem import ClaimRefused, WorkItem

log = logging.getLogger("nstd")


class Worker:
    def __init__(self, config: Callable[[], Config], engine: Any, weights: Any, board: StatusBoard,
                 handoff: Handoff, scanner: Scanner, should_stop: Callable[[], bool],
                 status_line: Callable[[str], None] = lambda text: None,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic,
                 queue: Any = None, metrics: Metrics | None = None) -> None:
        """``config()``: the running config; ``status_line``: systemd's STATUS=;
        ``on_change``: a job ended (write the status file); ``clock``: monotonic seconds;
        ``queue``: a :mod:`nstd.daemon.fleet` queue (default: local); ``metrics``: for ``/metrics``."""
        self.config, self.engine, self.weights, self.board = config, engine, weights, board
        self.handoff, self.scanner, self.should_stop = handoff, scanner, should_stop
        self.status_line, self.on_change, self.clock = status_line, on_change, clock
        self.deferred: dict[Path, float] = {}  # work folder -> monotonic time of its next try
        self.beat = time.monotonic()  # last sign of progress (the watchdog's question)
        self.queue = queue if queue is not None else LocalQueue()
        self.metrics = metrics or Metrics()
        self._held: set[Path] = set()
        self._lost: set[Path] = set()  # held work the queue gave to another worker (the heartbeat finds out)
        self._lock = threading.Lock()  # the heartbeat and the scanner read what we hold

    # --- what we hold ----------------------------------------------------------------------

    def holds(self, work: Path) -> bool:
        with self._lock:
            return work in self._held

    def holding(self) -> list[Path]:
        with self._lock:
            return list(self._held)

    def _hold(self, work: Path, yes: bool) -> None:
        with self._lock:
            (self._held.add if yes else self._held.discard)(work)
            self._lost.discard(work)

    def renew_leases(self) -> None:
        """The heartbeat's call: renew what we hold; note what the queue gave to someone else."""
        lost = self.queue.renew(self.holding())
        with self._lock:
            self._lost.update(w for w in lost if w in self._held)

    def _has_lost(self, work: Path) -> bool:
        with self._lock:
            return work in self._lost

    def release_all(self) -> None:
        """On the way out: every held job may be taken over at once (checkpoints stay)."""
        for work in self.holding():
            if work.exists() and not self._has_lost(work):
                self.queue.release(work)

    # --- one turn ------------------------------------------------------------------------------

    def loop(self, now: float) -> bool:
        """Claim and run one job; False when there was nothing to do."""
        self.beat = now
        try:
            item = self.next_item(now)
        except OSError as exc:
            log.warning("could not claim a job (%s); trying again", exc)
            return False
        if item is None:
            self.status_line(f"idle; {self.board.queue_length} job(s) queued")
            return False
        self._hold(item.path, True)
        self.board.set_current({"name": item.label, "iteration": 0, "phase": "starting"})
        started = self.clock()
        try:
            hooks = Hooks(progress=JobProgress(self, item),
                          should_stop=lambda: self.should_stop() or self._has_lost(item.path),
                          fence=lambda: self.queue.fence(item.path, self.should_stop))
            outcome = runner.run_job(item, self.engine, self.weights, self.config(), hooks)
        finally:
            self.board.set_current(None)
        if outcome.kind == runner.STOPPED and self._has_lost(item.path):
            outcome = Outcome(runner.LOST, "stylize", outcome.error)
        self.settle(item, outcome, self.clock())
        self.metrics.job_ended(outcome.kind, self.clock() - started)
        return True

    def next_item(self, now: float) -> WorkItem | None:
        """Deferred work whose time has come, then orphans (they arrived earlier), then the oldest ready job."""
        for work, when in sorted(self.deferred.items(), key=lambda kv: kv[1]):
            if when <= now:
                del self.deferred[work]
                return WorkItem.load(work)
        work_root = self.config().paths.state / "work"
        orphans, queue = self.handoff.take()
        item = self.queue.next(work_root, orphans)
        if item is not None:
            return item
        for p in queue:
            if not self.queue.may_claim(p):  # another host ingests it
                self.handoff.discard(p)
                continue
            try:
                item = WorkItem.claim(p.candidate, work_root, p.arrived, p.expired)
            except ClaimRefused as exc:
                self.refuse(p.candidate, exc)
                item = None
            except OSError:
                raise  # the file system's trouble, not this job's: tried again
            except Exception as exc:  # noqa: BLE001 - one odd job fails alone, its files where they are
                self.refuse(p.candidate, ClaimRefused(f"{p.candidate.name}: cannot take this job "
                                                      f"({type(exc).__name__}: {exc}); its files stay where they are."))
                item = None
            self.handoff.discard(p)
            if item is not None:
                for q in queue:  # a job sharing a part with this one waits for a scan that sees who names it now
                    if q is not p and p.candidate.shared & set(q.candidate.files):
                        self.handoff.discard(q)
                return self.queue.ingest(item, work_root)
        return None

    def refuse(self, c: jobs.Candidate, exc: ClaimRefused) -> None:
        """A job that cannot be claimed fails once, with its reason, inputs untouched in the inbox;
        it is tried again only when its files change."""
        self.scanner.refuse(c)
        self.metrics.claim_failed()
        log.error("job=%s cannot be claimed: %s", c.name, exc)
        try:
            dest = outbox.refused(self.config(), c.name, str(c.rel), exc, c.files)
            self.board.job_failed(c.name, str(exc), str(dest))
        except OSError as err:
            log.error("job=%s: could not write its error record either (%s)", c.name, err)

    # --- endings -------------------------------------------------------------------------------

    def settle(self, item: WorkItem, outcome: Outcome, now: float) -> None:
        """Apply the one retry policy to how the try ended."""
        cfg = self.config()
        if outcome.kind == runner.DONE:
            log.info("job=%s done: %s", item.label, outcome.image)
            self.board.job_done(item.label, outcome.image)
        elif outcome.kind == runner.GONE:
            log.warning("job=%s: its work folder %s holds no inputs any more; removing it", item.label,
                        item.path.name)
            item.remove()
        elif outcome.kind == runner.LOST:
            log.warning("job=%s: lost the job to another worker (%s); its result is theirs to publish",
                        item.label, outcome.error)
            self.queue.forget(item.path)
        elif outcome.kind == runner.STOPPED:
            return  # still held: released again, with every other held job, when the daemon stops
        else:
            policy = RetryPolicy(cfg.service.retries, cfg.service.retry_backoff)
            attempts = item.meta.attempts + 1
            delay = policy.delay(outcome, attempts)
            if delay is not None:
                self._retry_later(item, outcome, attempts, delay, now)
                return
            if not self.fail(item, outcome):
                return
        if outcome.kind != runner.LOST:
            self.queue.complete(item.path)
        self._hold(item.path, False)
        self.on_change()

    def _retry_later(self, item: WorkItem, outcome: Outcome, attempts: int, delay: float, now: float) -> None:
        retries = self.config().service.retries
        what = "transient failure" if outcome.kind == runner.TRANSIENT else "unexpected error"
        level = logging.WARNING if outcome.kind == runner.TRANSIENT else logging.ERROR
        try:
            item.meta.attempts = attempts
            item.save()
            item.log("%s (%s: %s); retry %d/%d in %.0fs", what, type(outcome.error).__name__, outcome.error,
                     attempts, retries, delay, level=level)
        except OSError as exc:  # e.g. the disk is full: even the log can't be written
            log.error("job=%s: %s (%s), and cannot record it (%s); retry in %.0fs", item.label, what,
                      outcome.error, exc, delay)
        if outcome.kind == runner.CRASHED:
            log.error("job=%s unexpected error", item.label, exc_info=outcome.error)
        self.deferred[item.path] = now + delay

    def fail(self, item: WorkItem, outcome: Outcome) -> bool:
        """Every input and error.yaml to failed/; if even that fails, keep the work and try later (False)."""
        from nstd.spool.report import versions

        cfg, meta = self.config(), item.meta
        phase = "internal" if outcome.kind == runner.CRASHED else outcome.phase
        try:
            if is_internal_text(outcome.error):
                item.log.detail("".join(traceback.format_exception(outcome.error)))
            item.log("FAILED in %s: %s", phase, plain(outcome.error), level=logging.ERROR)
            dest = outbox.fail(item.path, cfg, meta.name, meta.rel, outcome.error, phase,
                               outcome.params.as_dict() if outcome.params else None, versions(), item.log.text())
        except Exception:  # noqa: BLE001 - e.g. disk full: the inputs stay in the work folder
            where = item.inputs if outbox.has_inputs(item.path) else cfg.paths.failed
            log.exception("job=%s could not be moved to failed/ completely; its inputs are in %s; trying again "
                          "in %.0fs", item.label, where, cfg.service.retry_backoff)
            self.deferred[item.path] = self.clock() + cfg.service.retry_backoff
            return False
        item.remove()  # the inputs are safe in failed/ now: nothing after this may fail the failure
        log.error("job=%s failed; inputs and error.yaml are in %s", item.label, dest)
        self.board.job_failed(item.label, plain(outcome.error), str(dest))
        try:
            outbox.preview_path(cfg, meta.name, meta.rel).unlink(missing_ok=True)
        except OSError as err:
            log.warning("job=%s: could not remove its preview (%s)", item.label, err)
        return True


class JobProgress:
    """One running job's progress, to the status board, systemd's STATUS= line and (every
    10 s) the job log; each call is also the worker's sign of life."""

    def __init__(self, worker: Worker, item: WorkItem) -> None:
        self.worker, self.item, self.last_log = worker, item, 0.0
        self.tick = iteration_timer(worker.metrics, worker.clock)

    def __call__(self, p: Any) -> None:
        w, item = self.worker, self.item
        w.beat = w.clock()
        self.tick(p.iteration)
        clip = {"frame": p.frame, "frames": p.frames} if hasattr(p, "frame") else {}  # a clip's frame
        w.metrics.job_progress(p.eta, clip.get("frame", 0), clip.get("frames", 0))
        w.board.set_current({"name": item.label, "scale": p.scale, "scales": p.scales, "tile": p.tile,
                             "tiles": p.tiles, "iteration": p.iteration, "iterations": p.iterations,
                             "loss": p.loss, "elapsed": round(p.elapsed, 1),
                             "eta": None if p.eta is None else round(p.eta, 1), **clip})
        tile = f" tile {p.tile}/{p.tiles}" if p.tiles else ""
        frame = f"frame {p.frame}/{p.frames} " if clip else ""
        w.status_line(f"{item.label}: {frame}scale {p.scale}/{p.scales}{tile} iteration {p.iteration}/"
                      f"{p.iterations} loss {p.loss:.4g} {p.eta_text}")
        if w.beat - self.last_log >= 10 or (p.iteration == p.iterations and not clip):
            self.last_log = w.beat
            item.log("%sscale %d/%d%s iteration %d/%d loss %.4g (content %.3g, style %.3g, tv %.3g) elapsed "
                     "%.0fs %s", frame, p.scale, p.scales, tile, p.iteration, p.iterations, p.loss, p.content,
                     p.style, p.tv, p.elapsed, p.eta_text)

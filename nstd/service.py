"""``nstd run``: the long-running service around one resident engine.

Threads, each with one job:
  * worker (main thread): claims the oldest ready job, runs it, publishes or fails it;
  * scanner: lists the inbox, tracks which jobs have settled, finds orphaned work;
  * heartbeat: renews leases, writes the status file, tells systemd we are alive;
  * observer (watchdog): only wakes the scanner.
Signals: SIGTERM/SIGINT stop after checkpointing the running job; SIGHUP reloads the config.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nstd import config as config_mod
from nstd import jobs, outbox
from nstd.atomic import write_atomic, write_bytes_atomic
from nstd.config import Config
from nstd.errors import ConfigError, NstdError
from nstd.logs import JournalFormatter, on_journal
from nstd.images import encode
from nstd.notify import Notifier
from nstd.engine.regions import describe as describe_regions
from nstd.engine.regions import load_regions
from nstd.params import resolve
from nstd.scanner import Handoff, Scanner
from nstd.status import StatusBoard

log = logging.getLogger("nstd")


@dataclass
class JobInputs:
    """A claimed job, read and decoded: what the engine needs."""

    spec: jobs.JobSpec
    params: Any  # nstd.params.Params
    content: Any  # LoadedImage
    styles: list
    regions: list | None
    init_image: Any


def params_key(params: Any) -> str:
    """A checkpoint belongs to exactly these parameters."""
    return json.dumps(params.as_dict(), sort_keys=True, default=str)


def is_transient(exc: BaseException) -> bool:
    """Out of memory or disk: worth retrying later rather than failing the job."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.ENOMEM):
        return True
    return type(exc).__name__ == "ResourceExhaustedError"


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


class JobLog:
    """The job's own human-readable log, kept in its work folder (survives restarts)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    def __call__(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        text = message % args if args else message
        log.log(level, "job=%s %s", self.name, text)
        with open(self.path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def text(self) -> str:
        return self.path.read_text() if self.path.exists() else ""


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
        self.held: set[Path] = set()  # work folders this worker owns (the scanner leaves them alone)
        self.deferred: dict[Path, float] = {}
        self.board = StatusBoard(jobs.host_name())
        self.handoff = Handoff()
        self.work_ready = self.handoff.ready
        self.scanner = Scanner(lambda: self.cfg, self.board, self.handoff, lambda work: work in self.held)
        self.worker_beat = time.monotonic()
        self.engine: Any = None
        self.weights: Any = None
        self.inbox_watch: Any = None  # nstd.watch.InboxWatch, from run()
        self.status_path = cfg.paths.state / "status" / f"{jobs.safe_name(jobs.host_name())}-{os.getpid()}.json"
        self._last_status_send = 0.0

    # --- start-up -------------------------------------------------------------------------

    @property
    def work_root(self) -> Path:
        return self.cfg.paths.state / "work"

    def prepare(self) -> None:
        """Create folders and refuse set-ups that cannot be safe."""
        p = self.cfg.paths
        os.umask(self.cfg.output.umask)
        for folder in (p.inbox, p.outbox, p.failed, p.state, self.work_root, self.status_path.parent,
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

    def load_engine(self) -> None:
        from nstd.engine import Engine, load_weights

        t0 = time.monotonic()
        log.info("loading weights %s", self.cfg.weights)
        self.weights = load_weights(self.cfg.weights)
        self.engine = Engine(self.weights, memory_limit=self.cfg.limits.memory)
        log.info("engine ready on %s in %.1fs (weights %s, %s, sha256 %s…)", self.engine.device,
                 time.monotonic() - t0, self.weights.source, self.weights.format, self.weights.sha256[:12])

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
                for work in list(self.held):
                    try:
                        jobs.heartbeat(work)
                    except OSError as exc:
                        log.warning("cannot renew the lease of %s: %s", work.name, exc)
                self.write_status()
            if wd and self.alive(wd * 2):
                self.notifier.send("WATCHDOG=1")

    def alive(self, stall: float) -> bool:
        """True only while every part is making progress: the systemd watchdog's question."""
        now = time.monotonic()
        observer = self.inbox_watch.observer if self.inbox_watch is not None else None
        observer_ok = observer is None or observer.is_alive()
        scanner_ok = now - self.scanner.beat < max(stall, self.cfg.watch.rescan_seconds + 30)
        worker_ok = now - self.worker_beat < max(stall, 60.0)
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

    # --- the worker -----------------------------------------------------------------------

    def next_work(self) -> Path | None:
        """Claim something: orphaned work first (it arrived earlier), then the oldest ready job."""
        now = time.monotonic()
        for work, when in sorted(self.deferred.items(), key=lambda kv: kv[1]):
            if when <= now:
                del self.deferred[work]
                return work
        orphans, queue = self.handoff.take()
        for work in orphans:
            new = jobs.take_over(work, self.work_root)
            if new is not None:
                log.info("job=%s resuming work left by an earlier daemon (%s)",
                         jobs.read_yaml(new / "meta.yaml").get("name"), work.name)
                return new
        for p in queue:
            try:
                work = jobs.claim(p.candidate, self.work_root, p.arrived)
            except jobs.ClaimRefused as exc:
                self.refuse(p.candidate, exc)
                work = None
            self.handoff.discard(p)
            if work is not None:
                if p.expired:
                    jobs.write_yaml(work / "expired.yaml", {"reason": p.expired})
                return work
        return None

    def refuse(self, c: jobs.Candidate, exc: jobs.ClaimRefused) -> None:
        """A job that cannot be claimed fails once, with its reason, inputs untouched in the inbox;
        it is tried again only when its files change."""
        self.scanner.refuse(c)
        rel, name = str(c.rel), c.name
        log.error("job=%s cannot be claimed: %s", name, exc)
        try:
            dest = outbox.refused(self.cfg, name, rel, exc, c.files)
            self.board.job_failed(name, str(exc), str(dest))
        except OSError as err:
            log.error("job=%s: could not write its error record either (%s)", name, err)

    def run_forever(self) -> None:
        while not self.note_stop():
            self.worker_beat = time.monotonic()
            if self.reload_requested.is_set():
                self.reload()
            try:
                work = self.next_work()
            except OSError as exc:
                log.warning("could not claim a job (%s); trying again", exc)
                work = None
            if work is None:
                self.set_status_line(f"idle; {self.board.queue_length} job(s) queued")
                self.work_ready.wait(timeout=1.0)
                self.work_ready.clear()
                continue
            self.held.add(work)
            try:
                self.process(work)
            except Exception as exc:  # noqa: BLE001 - never a dead daemon
                try:
                    self.internal_error(work, exc)
                except Exception:  # noqa: BLE001 - e.g. the disk is full: even the error record can't be written
                    log.exception("job=%s: could not record the error (disk full?); it stays in %s and is tried "
                                  "again in %.0fs", work.name, work, self.cfg.service.retry_backoff)
                    self.deferred[work] = time.monotonic() + self.cfg.service.retry_backoff
            finally:
                if not (work in self.deferred or (work.exists() and self.stopping.is_set())):
                    self.held.discard(work)

    def process(self, work: Path) -> None:
        """One claimed job, as named steps: read, resume point, run, publish."""
        meta = jobs.read_yaml(work / "meta.yaml")
        name, rel = meta.get("name", work.name), meta.get("rel", ".")
        jl = JobLog(work / "job.log", str(Path(rel) / name) if rel != "." else name)
        if (work / "published.yaml").exists():
            self.finish(work, meta, jl)
            return
        if not outbox.has_inputs(work):  # already moved to failed/ by an earlier try: nothing left to do
            log.warning("job=%s: its work folder %s holds no inputs any more; removing it", name, work.name)
            shutil.rmtree(work, ignore_errors=True)
            self.held.discard(work)
            return
        inputs = self.read_inputs(work, meta, jl)
        if inputs is None:
            return
        resume = self.resume_point(work, inputs.params, jl)
        t_run = time.time()
        result = self.run_engine(work, meta, inputs, resume, jl)
        if result is not None:
            self.publish(work, meta, inputs, result, resume is None, t_run, jl)

    def read_inputs(self, work: Path, meta: dict[str, Any], jl: JobLog) -> JobInputs | None:
        """Spec, parameters and decoded images; a job that cannot be read fails here (None)."""
        cfg = self.cfg
        name, rel, form = meta.get("name", work.name), meta.get("rel", "."), meta.get("form", "yaml")
        params = None
        try:
            expired = jobs.read_yaml(work / "expired.yaml").get("reason")
            if expired:
                raise jobs.JobError(f"{name}: {expired}")
            jl("claimed (form %s, folder %s, waited %.1fs)", form, rel, time.time() - float(meta.get("arrived", 0)))
            spec = jobs.load_spec(name, form, work / "input", cfg.limits.yaml_bytes)
            source = spec.content.parent.name if form == "folder" else name
            params = resolve({"preview_every": cfg.output.preview_every, **cfg.defaults, **spec.raw_params},
                             where=f"{source} parameters")

            def load(path: Path) -> Any:
                return jobs.load_inbox_image(path, cfg.limits)

            content = load(spec.content)
            styles = [(load(p), w) for p, w in spec.styles]
            regions = load_regions(spec.regions, load)
            jobs.check_limits(params, content.size, cfg.limits, source)
            init_image = None
            if params.init not in ("noise", "content", "style"):
                init_image = load(jobs.inside(spec.content.parent, params.init, "init", source))
            jl("content %s %dx%d; styles %s", spec.content.name, *content.size,
               ", ".join(f"{p.name} (weight {w:g})" for p, w in spec.styles))
            jl("parameters: preset %s, solver %s, size %s, iterations %d, seed %s", params.preset, params.solver,
               params.size, params.iterations, params.seed)
            return JobInputs(spec, params, content, styles, regions, init_image)
        except NstdError as exc:
            self.fail(work, name, rel, exc, exc.phase, params, jl)
        except Exception as exc:  # noqa: BLE001 - unreadable inputs are the job's problem, not ours
            self.fail(work, name, rel, exc, "input", params, jl)
        return None

    @staticmethod
    def resume_point(work: Path, params: Any, jl: JobLog) -> dict[str, Any] | None:
        """The checkpoint to continue from, if it was made with these very parameters."""
        from nstd.engine import load_checkpoint

        ckpt = work / "checkpoint.npz"
        if not ckpt.exists():
            return None
        try:
            state = load_checkpoint(ckpt.read_bytes())
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint only costs time
            jl("checkpoint unreadable (%s): starting over", exc, level=logging.WARNING)
            return None
        if state.get("params") != params_key(params):
            jl("parameters changed since the checkpoint: starting over")
            return None
        jl("resuming from checkpoint at scale %d, iteration %d", state["scale"] + 1, state["iteration"])
        return state

    def run_engine(self, work: Path, meta: dict[str, Any], inputs: JobInputs, resume: dict[str, Any] | None,
                   jl: JobLog) -> Any:
        """The optimisation; None when it stopped for a restart, was deferred for a retry, or failed."""
        from nstd.engine import Interrupted, save_checkpoint

        cfg, params = self.cfg, inputs.params
        name, rel = meta.get("name", work.name), meta.get("rel", ".")
        key = params_key(params)

        def save(state: dict[str, Any]) -> None:
            write_atomic(work / "checkpoint.npz", lambda fh: fh.write(save_checkpoint({**state, "params": key})))

        def preview(image: Any, iteration: int) -> None:
            write_atomic(outbox.preview_path(cfg, name, rel),
                         lambda fh: fh.write(encode(image, None, "." + cfg.output.format)))

        self.board.set_current({"name": jl.name, "iteration": 0, "iterations": params.iterations, "phase": "starting"})
        try:
            return self.engine.stylize(inputs.content, inputs.styles, params, init_image=inputs.init_image,
                                       regions=inputs.regions, progress=self.progress_reporter(jl), checkpoint=save,
                                       checkpoint_every=cfg.service.checkpoint_every, resume=resume,
                                       preview=preview, should_stop=self.note_stop)
        except Interrupted as exc:
            jl("stopping: %s; checkpoint saved, the job resumes on the next start", exc)
            jobs.heartbeat(work, released=True)
        except Exception as exc:  # noqa: BLE001
            attempts = int(meta.get("attempts", 0)) + 1
            if is_transient(exc) and attempts <= cfg.service.retries:
                delay = cfg.service.retry_backoff * 2 ** (attempts - 1)
                jobs.write_yaml(work / "meta.yaml", {**meta, "attempts": attempts})
                jl("transient failure (%s: %s); retry %d/%d in %.0fs", type(exc).__name__, exc, attempts,
                   cfg.service.retries, delay, level=logging.WARNING)
                self.deferred[work] = time.monotonic() + delay
            else:
                self.fail(work, name, rel, exc, "stylize", params, jl)
        finally:
            self.board.set_current(None)
        return None

    def progress_reporter(self, jl: JobLog) -> Callable[[Any], None]:
        """Progress to the status board, systemd's STATUS= line and (every 10 s) the job log."""
        last_log = [0.0]

        def progress(p: Any) -> None:
            self.worker_beat = time.monotonic()
            self.board.set_current({"name": jl.name, "scale": p.scale, "scales": p.scales, "tile": p.tile,
                                    "tiles": p.tiles, "iteration": p.iteration, "iterations": p.iterations,
                                    "loss": p.loss, "elapsed": round(p.elapsed, 1),
                                    "eta": None if p.eta is None else round(p.eta, 1)})
            tile = f" tile {p.tile}/{p.tiles}" if p.tiles else ""
            self.set_status_line(f"{jl.name}: scale {p.scale}/{p.scales}{tile} iteration {p.iteration}/{p.iterations} "
                                 f"loss {p.loss:.4g} {p.eta_text}")
            now = time.monotonic()
            if now - last_log[0] >= 10 or p.iteration == p.iterations:
                last_log[0] = now
                jl("scale %d/%d%s iteration %d/%d loss %.4g (content %.3g, style %.3g, tv %.3g) elapsed %.0fs %s",
                   p.scale, p.scales, tile, p.iteration, p.iterations, p.loss, p.content, p.style, p.tv, p.elapsed,
                   p.eta_text)

        return progress

    def publish(self, work: Path, meta: dict[str, Any], inputs: JobInputs, result: Any, fresh: bool, t_run: float,
                jl: JobLog) -> None:
        """Result, report and log to the outbox (once), then the originals to the archive."""
        from nstd.report import job_report, relocate_inputs

        cfg, spec = self.cfg, inputs.spec
        name, rel, form = meta.get("name", work.name), meta.get("rel", "."), meta.get("form", "yaml")
        ext = Path(spec.output_name).suffix.lower() if spec.output_name else "." + cfg.output.format
        out_name = Path(spec.output_name).stem if spec.output_name else name
        claimed = float(meta.get("claimed", t_run))
        report = job_report(
            status="done", result=result, params=inputs.params, content=inputs.content, styles=inputs.styles,
            **describe_regions(inputs.regions), weights=self.weights,
            output=None, device=self.engine.device, history_every=max(1, result.iterations // 100),
            timings={"queue_wait": round(claimed - float(meta.get("arrived", t_run)), 3),
                     "claim_to_first_iteration": round(t_run - claimed + result.timings.get("first_iteration_start",
                                                                                            0.0), 3)
                     if fresh else None,
                     "wall": round(time.time() - t_run, 3)},
            job={"name": name, "folder": rel, "form": form, "attempts": int(meta.get("attempts", 0)) + 1},
        )
        jl("finished: %d iterations in %.1fs (%s), loss %.4g → %.4g", result.iterations, result.timings["total"],
           result.stopped_by, result.initial["loss"], result.final["loss"])
        target = outbox.archive_target(cfg, name, rel)
        meta["archive_to"] = str(target) if target is not None else None
        jobs.write_yaml(work / "meta.yaml", meta)
        relocate_inputs(report, work / "input", target)
        outbox.publish(work, cfg, out_name, rel, encode(result.image, result.alpha, ext), ext, report, jl.text())
        self.finish(work, meta, jl)

    def finish(self, work: Path, meta: dict[str, Any], jl: JobLog) -> None:
        """After publishing: originals to the archive, work folder gone. Safe to repeat."""
        published = jobs.read_yaml(work / "published.yaml")
        name, rel = meta.get("name", "job"), meta.get("rel", ".")
        target = meta["archive_to"] if "archive_to" in meta else outbox.archive_target(self.cfg, name, rel)
        where = outbox.archive_inputs(work, self.cfg, name, rel, None if target is None else Path(target))
        outbox.preview_path(self.cfg, meta.get("name", "job"), meta.get("rel", ".")).unlink(missing_ok=True)
        log.info("job=%s done: %s%s", jl.name, published.get("image"),
                 f"; originals in {where}" if where else "; originals deleted")
        self.board.job_done(jl.name, published.get("image"))
        shutil.rmtree(work, ignore_errors=True)
        self.held.discard(work)
        self.write_status()

    def fail(self, work: Path, name: str, rel: str, exc: BaseException, phase: str, params: Any, jl: JobLog) -> None:
        from nstd.report import versions

        jl("FAILED in %s: %s", phase, exc, level=logging.ERROR)
        dest = outbox.fail(work, self.cfg, name, rel, exc, phase, params.as_dict() if params else None, versions(),
                           jl.text())
        # the inputs are safe in failed/ now: nothing after this may fail the failure
        shutil.rmtree(work, ignore_errors=True)
        self.held.discard(work)
        self.board.set_current(None)
        log.error("job=%s failed; inputs and error.yaml are in %s", jl.name, dest)
        self.board.job_failed(jl.name, str(exc), str(dest))
        try:
            outbox.preview_path(self.cfg, name, rel).unlink(missing_ok=True)
        except OSError as err:
            log.warning("job=%s: could not remove its preview (%s)", jl.name, err)
        self.write_status()

    def internal_error(self, work: Path, exc: BaseException) -> None:
        """A bug, not the job's fault: retry a few times, then fail it with the traceback."""
        meta = jobs.read_yaml(work / "meta.yaml")
        crashes = int(meta.get("crashes", 0)) + 1
        name, rel = meta.get("name", work.name), meta.get("rel", ".")
        if crashes <= self.cfg.service.retries and work.exists():
            log.exception("job=%s unexpected error (%d/%d); it will be retried", name, crashes,
                          self.cfg.service.retries)
            jobs.write_yaml(work / "meta.yaml", {**meta, "crashes": crashes})
            self.deferred[work] = time.monotonic() + self.cfg.service.retry_backoff
            return
        log.exception("job=%s unexpected error, giving up after %d tries", name, crashes)
        try:
            self.fail(work, name, rel, exc, "internal", None, JobLog(work / "job.log", name))
        except Exception:  # noqa: BLE001
            where = work / "input" if outbox.has_inputs(work) else self.cfg.paths.failed
            log.exception("job=%s could not be moved to failed/ completely; its inputs are in %s", name, where)
            self.deferred[work] = time.monotonic() + self.cfg.service.retry_backoff

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
        try:
            self._reload()
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the daemon
            log.error("config reload failed, still running on the previous config: %s", exc)
            self.notifier.send("READY=1", "STATUS=config reload failed; running on the previous config")

    def _reload(self) -> None:
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            new = config_mod.load(self.config_path) if self.config_path else self.cfg
        except NstdError as exc:
            log.error("config reload failed, still running on the previous config: %s", exc)
            self.notifier.send("READY=1", "STATUS=config reload failed; running on the previous config")
            return
        kept = []
        if new.paths != self.cfg.paths:
            kept.append("paths")
        if new.weights != self.cfg.weights:
            kept.append("weights")
        if kept:
            log.warning("config reloaded, but %s changes need a restart; keeping the running ones", " and ".join(kept))
            new = dataclasses.replace(new, paths=self.cfg.paths, weights=self.cfg.weights)
        os.umask(new.output.umask)
        self.cfg = new
        log.info("config reloaded from %s", self.config_path)
        self.notifier.send("READY=1", "STATUS=config reloaded")

    # --- main -------------------------------------------------------------------------------

    def run(self) -> int:
        from nstd.watch import InboxWatch

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        self.prepare()
        self.load_engine()
        self.inbox_watch = InboxWatch(self.cfg.paths.inbox, self.cfg.watch.mode, self.cfg.watch.poll_interval,
                                      self.wake)
        self.scanner.scan_once()  # everything already waiting, before we say ready
        scan = threading.Thread(target=self.scanner.loop, args=(self.stopping, self.wake, lambda: self.inbox_watch),
                                name="nstd-scanner", daemon=True)
        threads = [scan,
                   threading.Thread(target=self.heartbeat, name="nstd-heartbeat", daemon=True)]
        for t in threads:
            t.start()
        self.board.set_state("ready", getattr(self.engine, "device", None))
        self.write_status()
        self.notifier.send("READY=1", f"STATUS=ready; watching {self.cfg.paths.inbox}")
        log.info("ready: watching %s, results to %s", self.cfg.paths.inbox, self.cfg.paths.outbox)
        try:
            self.run_forever()
        finally:
            self.board.set_state("stopping")
            self.notifier.send("STOPPING=1", "STATUS=stopping")
            for work in list(self.held):
                if work.exists():
                    jobs.heartbeat(work, released=True)
            self.stopping.set()
            self.wake.set()
            if self.inbox_watch is not None:
                self.inbox_watch.stop()
            for t in threads:
                t.join(timeout=5)
            try:
                self.status_path.unlink()
            except OSError:
                pass
            log.info("stopped")
        return 0


def run(config_path: str) -> int:
    setup_logging()
    cfg = config_mod.load(config_path)
    return Daemon(cfg, config_path).run()

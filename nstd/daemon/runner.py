"""One claimed job from start to end, as named steps: read, resume point, optimise, publish.

:func:`run_job` has no threads and takes no decisions about retries: it returns an
:class:`Outcome`, and the worker applies its :class:`RetryPolicy` to that. The engine is
anything with ``stylize`` and ``device`` (a test passes a double).
"""

from __future__ import annotations

import errno
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nstd.spool import jobs, outbox
from nstd.atomic import write_atomic
from nstd.config import Config
from nstd.engine.regions import describe as describe_regions
from nstd.engine.regions import load_regions
from nstd.errors import NstdError
from nstd.images import encode, fit_size
from nstd.params import ENCODING_KEYS, fit_print, layered, resolve
from nstd.spool.workitem import WorkItem

DONE, STOPPED, FAILED, TRANSIENT, CRASHED, GONE, LOST = "done", "stopped", "failed", "transient", "crashed", "gone", \
    "lost"


class LostJob(Exception):
    """Another worker owns this job now (our lease lapsed); we must not publish it."""


@dataclass(frozen=True)
class Outcome:
    """How a try at a job ended. ``failed``: the job's fault, final; ``transient``: out of
    memory or disk, worth another try; ``crashed``: our fault (a bug); ``stopped``: a stop
    was asked for, checkpoint saved; ``gone``: nothing left to do; ``lost``: another worker
    owns it now (hands off); ``done``: published."""

    kind: str
    phase: str = ""
    error: BaseException | None = None
    params: Any = None  # the job's Params, once they were read
    image: str | None = None  # the published image


@dataclass(frozen=True)
class RetryPolicy:
    """The one place that decides whether a job is tried again, and when."""

    retries: int
    backoff: float

    def delay(self, outcome: Outcome, attempts: int) -> float | None:
        """Seconds until try ``attempts + 1``, or None: fail the job now."""
        if outcome.kind not in (TRANSIENT, CRASHED) or attempts > self.retries:
            return None
        return self.backoff * 2 ** (attempts - 1) if outcome.kind == TRANSIENT else self.backoff


@dataclass
class Hooks:
    """What a running job tells the daemon, and asks it."""

    progress: Callable[[Any], None] = lambda p: None  # nstd.engine.Progress, every iteration
    should_stop: Callable[[], bool] = lambda: False
    fence: Callable[[], None] = lambda: None  # raises LostJob if the job is no longer ours


@dataclass
class JobInputs:
    """A claimed job, read and decoded: what the engine needs."""

    spec: jobs.JobSpec
    params: Any  # nstd.params.Params
    content: Any  # LoadedImage
    styles: list
    regions: list | None
    init_image: Any


def is_transient(exc: BaseException) -> bool:
    """Out of memory or disk: worth retrying later rather than failing the job."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.ENOMEM):
        return True
    return type(exc).__name__ == "ResourceExhaustedError"


def params_key(params: Any) -> str:
    """A checkpoint belongs to exactly these parameters: those that shape the picture (a
    print request counts through the size it gave; dpi and JPEG quality only label the file)."""
    shaping = {k: v for k, v in params.as_dict().items() if k not in ENCODING_KEYS + ("print",)}
    return json.dumps(shaping, sort_keys=True, default=str)


def run_job(item: WorkItem, engine: Any, weights: Any, cfg: Config, hooks: Hooks | None = None) -> Outcome:
    """Read, resume, optimise and publish ``item``; every ending is an :class:`Outcome`."""
    hooks = hooks or Hooks()
    try:
        if item.published:  # an earlier try published and stopped before the finish
            return Outcome(DONE, image=finish(item, cfg))
        if not outbox.has_inputs(item.path):  # an earlier try moved them to failed/
            return Outcome(GONE)
        from nstd.video.daemon import is_clip_job, run_clip

        if is_clip_job(item, cfg):  # a video clip as content: frame by frame (nstd/video)
            return run_clip(item, engine, weights, cfg, hooks)
        try:
            inputs = read_inputs(item, cfg)
        except NstdError as exc:
            return Outcome(FAILED, exc.phase, exc)
        except Exception as exc:  # noqa: BLE001 - unreadable inputs are the job's problem, not ours
            return Outcome(FAILED, "input", exc)
        resume = resume_point(item, inputs.params)
        t_run = time.time()
        result = optimise(item, engine, inputs, resume, cfg, hooks)
        if isinstance(result, Outcome):
            return result
        hooks.fence()
        return Outcome(DONE, params=inputs.params,
                       image=publish(item, engine, weights, inputs, result, resume is None, t_run, cfg))
    except LostJob as exc:
        return Outcome(LOST, "publish", exc)
    except Exception as exc:  # noqa: BLE001 - never a dead daemon; the policy decides
        return Outcome(TRANSIENT if is_transient(exc) else CRASHED, "internal", exc)


def read_inputs(item: WorkItem, cfg: Config) -> JobInputs:
    """Spec, parameters and decoded images; raises what makes the job fail."""
    meta, say = item.meta, item.log
    if meta.expired:
        raise jobs.JobError(f"{meta.name}: {meta.expired}")
    say("claimed (form %s, folder %s, waited %.1fs)", meta.form, meta.rel, time.time() - meta.arrived)
    spec = jobs.load_spec(meta.name, meta.form, item.inputs, cfg.limits.yaml_bytes)
    source = spec.content.parent.name if meta.form == "folder" else meta.name
    params = resolve(layered({"preview_every": cfg.output.preview_every}, cfg.defaults, spec.raw_params),
                     where=f"{source} parameters")

    def load(path: Path) -> Any:
        return jobs.load_inbox_image(path, cfg.limits)

    content = load(spec.content)
    styles = [(load(p), w) for p, w in spec.styles]
    regions = load_regions(spec.regions, load)
    params = fit_print(params, content.size, cfg.limits.size, source)
    jobs.check_limits(params, content.size, cfg.limits, source, spec.content.name)
    init_image = None
    if params.init not in ("noise", "content", "style"):
        init_image = load(jobs.inside(spec.content.parent, params.init, "init", source))
    say("content %s %dx%d; styles %s", spec.content.name, *content.size,
        ", ".join(f"{p.name} (weight {w:g})" for p, w in spec.styles))
    say("parameters: preset %s, solver %s, size %s, iterations %d, seed %s", params.preset, params.solver,
        params.size, params.iterations, params.seed)
    if params.print is not None:
        say("print %s: size %d at %g dpi", params.print.describe(*content.size), params.size, params.dpi)
    out_size = fit_size(*content.size, params.size)
    if max(out_size) > max(content.size):
        say("the photo is upscaled from %dx%d to %dx%d (Lanczos) before it is stylized", *content.size, *out_size)
    return JobInputs(spec, params, content, styles, regions, init_image)


def resume_point(item: WorkItem, params: Any) -> dict[str, Any] | None:
    """The checkpoint to continue from, if it was made with these very parameters."""
    from nstd.engine import load_checkpoint

    if not item.checkpoint.exists():
        return None
    try:
        state = load_checkpoint(item.checkpoint.read_bytes())
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint only costs time
        item.log("checkpoint unreadable (%s): starting over", exc, level=logging.WARNING)
        return None
    if state.get("params") != params_key(params):
        item.log("parameters changed since the checkpoint: starting over")
        return None
    item.log("resuming from checkpoint at scale %d, iteration %d", state["scale"] + 1, state["iteration"])
    return state


def optimise(item: WorkItem, engine: Any, inputs: JobInputs, resume: dict[str, Any] | None, cfg: Config,
             hooks: Hooks) -> Any:
    """The engine's run, checkpointed into the work folder; an Outcome if it did not finish."""
    from nstd.engine import Interrupted, save_checkpoint

    key, meta = params_key(inputs.params), item.meta

    def save(state: dict[str, Any]) -> None:
        write_atomic(item.checkpoint, lambda fh: fh.write(save_checkpoint({**state, "params": key})))

    def preview(image: Any, iteration: int) -> None:
        write_atomic(outbox.preview_path(cfg, meta.name, meta.rel),
                     lambda fh: fh.write(encode(image, None, "." + cfg.output.format)))

    try:
        return engine.stylize(inputs.content, inputs.styles, inputs.params, init_image=inputs.init_image,
                              regions=inputs.regions, progress=hooks.progress, checkpoint=save,
                              plan=lambda plan: item.log("plan: %s", plan.describe()),
                              checkpoint_every=cfg.service.checkpoint_every, resume=resume, preview=preview,
                              should_stop=hooks.should_stop)
    except Interrupted as exc:
        item.log("stopping: %s; checkpoint saved, the job resumes on the next start", exc)
        item.release()
        return Outcome(STOPPED, "stylize", exc, inputs.params)
    except Exception as exc:  # noqa: BLE001
        return Outcome(TRANSIENT if is_transient(exc) else FAILED, "stylize", exc, inputs.params)


def publish(item: WorkItem, engine: Any, weights: Any, inputs: JobInputs, result: Any, fresh: bool, t_run: float,
            cfg: Config) -> str:
    """Result, report and log to the outbox (once), then the originals to the archive."""
    from nstd.spool.report import job_report, relocate_inputs

    meta, spec = item.meta, inputs.spec
    ext = Path(spec.output_name).suffix.lower() if spec.output_name else "." + cfg.output.format
    claimed = meta.claimed or t_run
    first = result.timings.get("first_iteration_start", 0.0)
    report = job_report(
        status="done", result=result, params=inputs.params, content=inputs.content, styles=inputs.styles,
        **describe_regions(inputs.regions), weights=weights, output=None, device=engine.device,
        history_every=max(1, result.iterations // 100),
        timings={"queue_wait": round(claimed - (meta.arrived or t_run), 3),
                 "claim_to_first_iteration": round(t_run - claimed + first, 3) if fresh else None,
                 "wall": round(time.time() - t_run, 3)},
        job={"name": meta.name, "folder": meta.rel, "form": meta.form, "attempts": meta.attempts + 1},
    )
    for note in result.notes:
        item.log("%s", note)
    item.log("finished: %d iterations in %.1fs (%s, %s), loss %.4g → %.4g", result.iterations,
             result.timings["total"], result.stopped_by, ", ".join(result.precision), result.initial["loss"],
             result.final["loss"])
    target = outbox.archive_target(cfg, meta.name, meta.rel)
    meta.archive_to = str(target) if target is not None else ""
    item.save()
    relocate_inputs(report, item.inputs, target)
    out_name = Path(spec.output_name).stem if spec.output_name else meta.name
    data = encode(result.image, result.alpha, ext, dpi=inputs.params.dpi, quality=inputs.params.jpeg_quality)
    outbox.publish(item.path, cfg, out_name, meta.rel, data, ext, report, item.log.text())
    return finish(item, cfg)


def finish(item: WorkItem, cfg: Config) -> str:
    """After publishing: originals to the archive, preview and work folder gone. Safe to repeat."""
    meta = item.meta
    image = item.published.get("image")
    if meta.archive_to is None:
        target = outbox.archive_target(cfg, meta.name, meta.rel)
    else:
        target = Path(meta.archive_to) if meta.archive_to else None
    where = outbox.archive_inputs(item.path, cfg, meta.name, meta.rel, target)
    outbox.preview_path(cfg, meta.name, meta.rel).unlink(missing_ok=True)
    item.log("originals %s", f"moved to {where}" if where else "deleted")
    item.remove()
    return image

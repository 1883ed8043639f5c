"""A claimed job whose content is a clip: read, resume, the frame loop, publish.

:func:`nstd.daemon.runner.run_job` hands a job here when :func:`is_clip_job` says its content is a
clip (a video extension, a folder of frames, or a GIF/WebP with more than one frame). Every
ending is a :class:`nstd.daemon.runner.Outcome`, as for a still, so the worker's retry policy,
``failed/`` and the archive treat both alike. The finished frames live in the work folder
(``frames/``), so a restarted daemon resumes at the first unfinished frame; the video is
encoded into the work folder and then published into the outbox under a temporary name
and renamed, exactly once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstd.spool import jobs, outbox
from nstd.daemon import runner
from nstd.atomic import write_atomic
from nstd.config import Config
from nstd.errors import NstdError, ParamError
from nstd.images import encode
from nstd.params import resolve
from nstd.video.clip import Clip, ClipLimits, is_clip_path, open_regular
from nstd.video.encode import OUTPUT_EXTS, output_kind
from nstd.spool.workitem import WorkItem

#: The output a clip gets when the job names none: the same container family.
DEFAULT_OUTPUT = {".mov": ".mov", ".mkv": ".mkv", ".webm": ".webm", ".gif": ".gif", ".webp": ".webp"}


def default_output(content: Path) -> str:
    """``.mp4`` (H.264 with the sound copied), or the clip's own family (mov, mkv, webm,
    an animated GIF or WebP; a folder of frames gives frames)."""
    if content.is_dir():
        return ".png"
    return DEFAULT_OUTPUT.get(content.suffix.lower(), ".mp4")


def content_of(item: WorkItem, cfg: Config) -> tuple[jobs.JobSpec, Path] | None:
    """The job's spec and content path, when its content is a clip (None otherwise, or when
    the spec cannot be read: the still path reports that)."""
    meta = item.meta
    try:
        spec = jobs.load_spec(meta.name, meta.form, item.inputs, cfg.limits.yaml_bytes)
    except Exception:  # noqa: BLE001
        return None
    return (spec, spec.content) if is_clip_path(spec.content) else None


def is_clip_job(item: WorkItem, cfg: Config) -> bool:
    return content_of(item, cfg) is not None


@dataclass
class ClipInputs:
    spec: jobs.JobSpec
    params: Any
    clip: Clip
    styles: list
    output: str  # the output's extension


def _raw(cfg: Config, spec: jobs.JobSpec) -> dict[str, Any]:
    from nstd import params as params_mod

    layers = ({"preview_every": cfg.output.preview_every}, dict(cfg.defaults), dict(spec.raw_params))
    layered = getattr(params_mod, "layered", None)
    if layered is not None:
        return layered(*layers)
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


def read_clip_inputs(item: WorkItem, cfg: Config, spec: jobs.JobSpec) -> ClipInputs:
    """Parameters, the opened clip and the styles; raises what makes the job fail."""
    meta, say = item.meta, item.log
    if meta.expired:
        raise jobs.JobError(f"{meta.name}: {meta.expired}")
    say("claimed (form %s, folder %s, waited %.1fs): a clip", meta.form, meta.rel, time.time() - meta.arrived)
    source = spec.content.parent.name if meta.form == "folder" else meta.name
    params = resolve(_raw(cfg, spec), where=f"{source} parameters")
    if spec.regions:
        raise ParamError(f"{source}: regions are for still pictures; a clip's frames have no masks of their own.")
    if params.init not in ("noise", "content", "style"):
        raise ParamError(f"{source}: init: {params.init} names a picture, which a clip cannot start from; use "
                         "content, noise or style (later frames start from the previous one).")
    if params.frame_iterations > cfg.limits.iterations:
        raise ParamError(f"{source}: frame_iterations {params.frame_iterations} is over the limit of "
                         f"{cfg.limits.iterations} (limits.iterations).")
    ext = Path(spec.output_name).suffix.lower() if spec.output_name else default_output(spec.content)
    if ext not in OUTPUT_EXTS:
        raise ParamError(f"{source}: output {spec.output_name}: a clip is written as .mp4, .mov, .mkv, .webm, .gif, "
                         ".webp or a folder of frames (.png, .jpg, .tif).")
    styles = [(jobs.load_inbox_image(p, cfg.limits), w) for p, w in spec.styles]
    clip = Clip(spec.content, ClipLimits.of(cfg.limits))
    try:
        info = clip.info
        jobs.check_limits(params, (info.width, info.height), cfg.limits, source, spec.content.name)
        clip.check_length(params.start, params.duration)
    except BaseException:
        clip.close()
        raise
    say("content %s: %s %s %dx%d, %.3g fps, %s s%s%s; styles %s", spec.content.name, info.container.split(",")[0],
        info.codec, info.width, info.height, info.fps, "?" if info.duration is None else f"{info.duration:.2f}",
        f", rotated {info.rotation}°" if info.rotation else "", f", sound {info.audio}" if info.audio else "",
        ", ".join(f"{p.name} (weight {w:g})" for p, w in spec.styles))
    say("parameters: preset %s, size %s, iterations %d (first frame), %d (later frames), temporal_weight %g, "
        "start %g s, duration %s, seed %s", params.preset, params.size, params.iterations, params.frame_iterations,
        params.temporal_weight, params.start, "all" if params.duration is None else f"{params.duration:g} s",
        params.seed)
    return ClipInputs(spec, params, clip, styles, ext)


def load_resume(item: WorkItem, key: str) -> dict[str, Any] | None:
    """The engine's checkpoint inside a frame, when one was saved for these parameters and clip."""
    from nstd.engine import load_checkpoint

    if not item.checkpoint.exists():
        return None
    try:
        state = load_checkpoint(item.checkpoint.read_bytes())
        return state if state.get("params") == key else None  # the frame loop says if that frame is still to finish
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint only costs time
        item.log("checkpoint unreadable (%s): the frame starts over", exc, level=logging.WARNING)
        return None


def run_clip(item: WorkItem, engine: Any, weights: Any, cfg: Config, hooks: runner.Hooks) -> runner.Outcome:
    """:func:`nstd.daemon.runner.run_job` for a clip; every ending is an Outcome."""
    from nstd.engine import Interrupted, save_checkpoint
    from nstd.video.clip_job import ClipContent, sha256_file, stylize_clip

    found = content_of(item, cfg)
    if found is None:
        return runner.Outcome(runner.CRASHED, "internal", RuntimeError("not a clip job"))
    spec, _ = found
    try:
        inputs = read_clip_inputs(item, cfg, spec)
    except NstdError as exc:
        return runner.Outcome(runner.FAILED, exc.phase, exc)
    except Exception as exc:  # noqa: BLE001 - unreadable inputs are the job's problem
        return runner.Outcome(runner.FAILED, "input", exc)
    meta, params = item.meta, inputs.params
    try:
        sha = sha256_file(spec.content)
        key = runner.params_key(params) + "|" + sha
        resume = load_resume(item, key)

        def save(state: dict[str, Any]) -> None:
            write_atomic(item.checkpoint, lambda fh: fh.write(save_checkpoint({**state, "params": key})))

        def preview(image: Any, frame: int) -> None:
            write_atomic(outbox.preview_path(cfg, meta.name, meta.rel),
                         lambda fh: fh.write(encode(image, None, "." + cfg.output.format)))

        out_dir = item.path / "output"
        out_name = (Path(spec.output_name).stem if spec.output_name else "clip") + inputs.output
        t_run = time.time()
        try:
            result = stylize_clip(engine, inputs.clip, inputs.styles, params, out_dir / out_name, item.path,
                                  key=key, progress=hooks.progress, should_stop=hooks.should_stop, preview=preview,
                                  checkpoint=save, checkpoint_every=cfg.service.checkpoint_every, resume=resume,
                                  log=item.log, largest=cfg.limits.size,
                                  audio_opener=lambda p: open_regular(p, cfg.limits.input_bytes))
        except Interrupted as exc:
            item.log("stopping: %s; finished frames are kept, the clip resumes on the next start", exc)
            item.release()
            return runner.Outcome(runner.STOPPED, "stylize", exc, params)
        except NstdError as exc:
            return runner.Outcome(runner.FAILED, exc.phase, exc, params)
        except Exception as exc:  # noqa: BLE001
            return runner.Outcome(runner.TRANSIENT if runner.is_transient(exc) else runner.FAILED, "stylize", exc,
                                  params)
        hooks.fence()
        content = ClipContent(str(spec.content), sha, (inputs.clip.info.width, inputs.clip.info.height))
        return runner.Outcome(runner.DONE, params=params,
                              image=publish_clip(item, engine, weights, inputs, content, result, t_run, cfg))
    finally:
        inputs.clip.close()


def publish_clip(item: WorkItem, engine: Any, weights: Any, inputs: ClipInputs, content: Any, result: Any,
                 t_run: float, cfg: Config) -> str:
    """The video (or folder of frames), report and log to the outbox once, then the originals."""
    from nstd.spool.report import job_report, relocate_inputs

    meta, spec = item.meta, inputs.spec
    claimed = meta.claimed or t_run
    report = job_report(status="done", result=result, params=inputs.params, content=content, styles=inputs.styles,
                        weights=weights, output=None, device=engine.device,
                        history_every=max(1, len(result.history) // 100),
                        timings={"queue_wait": round(claimed - (meta.arrived or t_run), 3),
                                 "wall": round(time.time() - t_run, 3)},
                        job={"name": meta.name, "folder": meta.rel, "form": meta.form, "attempts": meta.attempts + 1},
                        **result.report())
    for note in result.notes:
        item.log("%s", note)
    item.log("finished: %d frames, %d iterations in %.1fs (first frame %.1fs, later frames %.2fs each)",
             result.used["frames"], result.iterations, result.timings["total"], result.timings["first_frame"] or 0,
             result.timings["later_frame_mean"] or 0)
    target = outbox.archive_target(cfg, meta.name, meta.rel)
    meta.archive_to = str(target) if target is not None else ""
    item.save()
    relocate_inputs(report, item.inputs, target)
    out_name = Path(spec.output_name).stem if spec.output_name else meta.name
    ext = inputs.output if output_kind("clip" + inputs.output) != "frames" else ""
    outbox.publish(item.path, cfg, out_name, meta.rel, result.output, ext, report, item.log.text())
    return runner.finish(item, cfg)

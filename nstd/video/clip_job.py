"""A clip as one job: the frame loop, its checkpoints, and the finished video.

For each frame of the part asked for (``start``, ``duration``), in order:

1. it is decoded at the size it is stylized at (streamed: one frame in memory at a time);
2. the first frame is stylized as a still would be (coarse to fine, ``iterations``);
3. every later frame starts from the previous *stylized* frame warped onto it by the
   optical flow of the *input* frames (:mod:`nstd.video.flow`), at full size only, for
   ``frame_iterations``; with ``temporal_weight`` > 0 and an engine that takes a temporal
   target, a loss term holds it to that warped frame where the flow is reliable;
4. it is written to the work folder as a PNG with a small YAML record, atomically.

The style Gram matrices are computed once per clip (the engine caches them by the style's
hash and size) and the compiled step is reused for every frame of one size. A restart
after a crash skips the frames already on disk and resumes at the first unfinished one
(inside it, from the engine's checkpoint if there is one): each frame is a deterministic
function of its input frame, the previous stylized frame as written (8-bit PNG) and the
seed, so the clip comes out identical to an uninterrupted run's. Then the frames are
encoded (:mod:`nstd.video.encode`) with the source's frame times and sound.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from nstd.atomic import write_atomic
from nstd.engine.hooks import Progress, Result
from nstd.images import LoadedImage
from nstd.video import flow
from nstd.video.clip import Clip, ClipInfo, Frame
from nstd.video.encode import AudioSource, ClipWriter, check_animation, even_size
from nstd.video.temporal import Temporal

#: The part of a job's parameters a finished frame depends on (a change starts the clip over).
FRAMES_FORMAT = 1


@dataclass
class ClipProgress(Progress):
    """The engine's progress inside one frame, plus where in the clip it is.

    It is a :class:`nstd.engine.Progress`, so whatever shows a still's progress shows a
    clip's; ``eta`` is for the whole clip, ``frame_eta`` for the frame."""

    frame: int = 0  # 1-based
    frames: int = 0  # as far as known (the header's count until the clip has been read)
    frame_eta: float | None = None


@dataclass
class ClipContent:
    """The content of a clip job, as a report names it."""

    path: str
    sha256: str
    size: tuple[int, int]
    alpha: None = None


@dataclass
class ClipResult(Result):
    """What a clip job made: an engine :class:`nstd.engine.Result` (summed or taken over
    the frames; ``image``: the last frame) plus the output and per-frame records."""

    output: Path | None = None
    info: ClipInfo | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    used: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The clip's own part of a job report."""
        per_frame = self.frames if len(self.frames) <= 1000 else self.frames[:: max(1, len(self.frames) // 1000)]
        later = [f["seconds"] for f in self.frames[1:]]
        return {"clip": {**self.info.as_dict(), "used": self.used,
                         "seconds_first_frame": self.frames[0]["seconds"] if self.frames else None,
                         "seconds_per_later_frame": round(float(np.mean(later)), 3) if later else None,
                         "per_frame": per_frame}}


def sha256_file(path: Path) -> str:
    """A clip file's sha256 (streamed), or for a folder of frames, of its names and bytes."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def frame_params(params: Any, later: bool) -> Any:
    """The engine's parameters for one frame: the clip's, at the frame's own size (frames
    come at the size asked for, each optimised whole at that size: a later frame's temporal
    term needs the content at every scale, so no detail passes); a later frame starts from
    the previous one, at full size only, for ``frame_iterations``."""
    p = dataclasses.replace(params, size=None, paint_size=None)
    if later:
        p = dataclasses.replace(p, init="previous", scales=(1.0,), iterations=params.frame_iterations,
                                coarse_iterations=None)
    return p


def takes_temporal(engine: Any) -> bool:
    """Whether ``engine.stylize`` takes a temporal target (``temporal=``)."""
    try:
        return "temporal" in inspect.signature(engine.stylize).parameters
    except (TypeError, ValueError):
        return False


def _quantised(image: np.ndarray) -> np.ndarray:
    """What a frame is once written: 8 bits. Later frames start from this, resumed or not."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class FrameStore:
    """Finished frames in the work folder: ``NNNNNN.png`` + ``NNNNNN.yaml``, and
    ``clip.yaml`` (the parameters they were made with, and the seed)."""

    def __init__(self, folder: Path, key: str, seed: int | None) -> None:
        self.folder = folder
        meta_path = folder / "clip.yaml"
        meta = {}
        if meta_path.is_file():
            try:
                meta = yaml.safe_load(meta_path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                meta = {}
        self.resumed = bool(meta) and meta.get("key") == key and meta.get("format") == FRAMES_FORMAT
        if not self.resumed:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            meta = {"format": FRAMES_FORMAT, "key": key,
                    "seed": int(seed) if seed is not None else secrets.randbits(32)}
            write_atomic(meta_path, lambda fh: fh.write(yaml.safe_dump(meta).encode()))
        self.seed = int(meta["seed"])

    def png(self, i: int) -> Path:
        return self.folder / f"{i:06d}.png"

    def record_path(self, i: int) -> Path:
        return self.folder / f"{i:06d}.yaml"

    def done(self, i: int) -> dict[str, Any] | None:
        """The record of frame ``i`` if it is finished (its PNG is written before it)."""
        path = self.record_path(i)
        if not (path.is_file() and self.png(i).is_file()):
            return None
        try:
            return yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return None

    def load(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.png(i)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def save(self, i: int, pixels: np.ndarray, record: dict[str, Any]) -> None:
        from PIL import Image
        import io

        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, "PNG", compress_level=1)
        write_atomic(self.png(i), lambda fh: fh.write(buf.getvalue()))
        write_atomic(self.record_path(i), lambda fh: fh.write(yaml.safe_dump(record, sort_keys=False).encode()))


def stylize_clip(engine: Any, clip: Clip, styles: list[tuple[LoadedImage, float]], params: Any, output: Path,
                 work: Path, *, key: str = "", progress: Callable[[ClipProgress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 preview: Callable[[np.ndarray, int], None] | None = None,
                 checkpoint: Callable[[dict[str, Any]], None] | None = None, checkpoint_every: int = 0,
                 resume: dict[str, Any] | None = None, log: Callable[..., None] | None = None,
                 overwrite: bool = True, audio_opener: Callable[[Path], Any] | None = None,
                 largest: int | None = None) -> ClipResult:
    """Stylize ``clip`` frame by frame into ``output`` (see the module's steps).

    ``work``: a folder that survives a crash (the daemon's work folder); finished frames
    go to ``work/frames``. ``key``: what the frames depend on besides the clip (the job's
    parameters); a different key starts over. ``checkpoint``/``resume``: the engine's,
    inside one frame (the state carries ``frame``). ``overwrite=False``: ``output`` is
    never replaced (``NAME-1.mp4`` …). Raises :class:`nstd.engine.Interrupted` when
    ``should_stop`` says so.
    """
    loop = FrameLoop(engine, clip, styles, params, output, work, key, largest, log)
    loop.progress, loop.should_stop, loop.preview = progress, should_stop, preview
    loop.checkpoint, loop.checkpoint_every, loop.resume = checkpoint, checkpoint_every, resume
    records = loop.run()
    return encode_clip(loop, records, overwrite, audio_opener)


class FrameLoop:
    """The frame loop of one clip: its plan (size, frame store, parameters), then
    :meth:`step` for every frame in order, each resumed, skipped or stylized."""

    progress: Callable[[ClipProgress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    preview: Callable[[np.ndarray, int], None] | None = None
    checkpoint: Callable[[dict[str, Any]], None] | None = None
    checkpoint_every: int = 0
    resume: dict[str, Any] | None = None

    def __init__(self, engine: Any, clip: Clip, styles: list[tuple[LoadedImage, float]], params: Any, output: Path,
                 work: Path, key: str, largest: int | None, log: Callable[..., None] | None) -> None:
        from nstd.engine.plan import check_size

        self.engine, self.clip, self.styles, self.params, self.output = engine, clip, styles, params, output
        self.say = log or (lambda *a, **k: None)
        info = self.info = clip.info
        self.t_start = time.monotonic()
        self.fit = check_size(info.width, info.height, params.size, largest, f"{Path(info.path).name}")
        size = self.size = even_size(*self.fit, output)
        self.notes = list(info.notes)
        if size != self.fit:
            fit = self.fit
            self.notes.append(f"{fit[0]}×{fit[1]} has an odd side, which {output.suffix} (H.264/VP9, 4:2:0) cannot "
                              f"encode: the last {'column' if size[0] != fit[0] else 'row'}"
                              f"{' and row' if size[0] != fit[0] and size[1] != fit[1] else ''} is cropped, to "
                              f"{size[0]}×{size[1]}")
        self.start, self.end = start, end = clip.check_length(params.start, params.duration)
        self.estimate = int(round(((end if end is not None else start) - start) * info.fps)) or info.frames or 0
        check_animation(output, self.estimate, *size)
        self.store = FrameStore(work / "frames", json.dumps({"key": key, "clip": sha_of(info), "size": size,
                                                             "output": output.suffix.lower()}, sort_keys=True),
                                params.seed)
        if self.store.resumed:
            self.say("resuming the clip: frames already stylized are kept")
        self.seed = self.store.seed
        self.temporal = params.temporal_weight > 0 and takes_temporal(engine)
        if params.temporal_weight > 0 and not self.temporal:
            self.notes.append("temporal_weight: this engine takes no temporal target yet; later frames are held by "
                              "the warm start alone")
        self.first_params = dataclasses.replace(frame_params(params, False), seed=self.seed)
        self.later_params = dataclasses.replace(frame_params(params, True), seed=self.seed)
        self.records: list[dict[str, Any]] = []
        self.prev_in: np.ndarray | None = None
        self.prev_out: np.ndarray | None = None
        self.first_seconds: float | None = None
        self.later_seconds: list[float] = []
        self.source = Path(info.path).name

    def run(self) -> list[dict[str, Any]]:
        """Every frame of the part asked for, in order; the records of all of them."""
        params = self.params
        for i, frame in enumerate(self.clip.frames(self.fit, self.start,
                                                   params.duration if params.duration is not None else None)):
            self.step(i, frame)
        return self.records

    def step(self, i: int, frame: Frame) -> None:
        """Frame ``i``: kept when finished before a restart, else stylized and stored."""
        from nstd.engine import Interrupted

        rgb = frame.rgb[: self.size[1], : self.size[0]]
        record = self.store.done(i)
        if record is not None:  # finished before a restart
            self.records.append(record)
            self.prev_in, self.prev_out = rgb, None
            return
        if self.should_stop is not None and self.should_stop():
            raise Interrupted(f"stopped before frame {i + 1} of the clip; {i} frame(s) are kept")
        content = Frame(frame.index, frame.time, np.ascontiguousarray(rgb)).as_image(self.source)
        fp, reliable, kwargs = self.warm_start(i, frame, rgb)
        t_frame = time.monotonic()
        total_frames = max(self.estimate, i + 1)
        frame_resume = self.resume if self.resume is not None and self.resume.get("frame") == i else None
        if frame_resume is not None:
            self.say("frame %d resumes from its checkpoint at iteration %d", i + 1, int(frame_resume["iteration"]))
        first_iterations = self.records[0]["iterations"] if self.records else 1
        result = self.engine.stylize(
            content, self.styles, fp, progress=lambda p: self.on_progress(p, i, total_frames, first_iterations),
            should_stop=self.should_stop, checkpoint=self.saver(i) if self.checkpoint is not None else None,
            checkpoint_every=self.checkpoint_every, resume=frame_resume, **kwargs)
        seconds = time.monotonic() - t_frame
        pixels = _quantised(result.image)
        record = {**frame_record(i, frame, self.start, result, seconds, reliable),
                  "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest()}  # resumed or not: compare these
        self.store.save(i, pixels, record)
        self.records.append(record)
        self.say("frame %d/%d (source frame %d, %.2f s) done: %d iterations in %.1fs, loss %.4g%s", i + 1,
                 total_frames, frame.index, frame.time, result.iterations, seconds,
                 result.final.get("loss", float("nan")),
                 f", flow reliable on {reliable:.0%}" if reliable is not None else "")
        if self.preview is not None:
            self.preview(pixels.astype(np.float32), i + 1)
        self.prev_in, self.prev_out = rgb, pixels
        if i == 0:
            self.first_seconds = seconds
        else:
            self.later_seconds.append(seconds)

    def warm_start(self, i: int, frame: Frame, rgb: np.ndarray) -> tuple[Any, float | None, dict[str, Any]]:
        """Frame ``i``'s parameters, how much of its flow is reliable, and (for a later
        frame) the previous stylized frame warped onto it, and the temporal term."""
        if i == 0:
            return self.first_params, None, {}
        kwargs: dict[str, Any] = {}
        if self.prev_out is None:
            self.prev_out = self.store.load(i - 1)
        m = flow.motion(self.prev_in, rgb)
        warped = m.warp(self.prev_out.astype(np.float32))
        kwargs["init_image"] = LoadedImage(warped, None, f"{self.source}#frame{frame.index - 1} warped", "")
        if self.temporal:
            kwargs["temporal"] = Temporal(warped, m.mask, self.params.temporal_weight)
        return self.later_params, round(m.reliable, 4), kwargs

    def on_progress(self, p: Any, i: int, total_frames: int, first_iterations: int) -> None:
        if self.progress is None:
            return
        left = total_frames - i - 1
        per_later = float(np.mean(self.later_seconds)) if self.later_seconds else None
        if per_later is None and self.first_seconds is not None:
            per_later = self.first_seconds * self.params.frame_iterations / max(1, first_iterations)
        eta = None
        if p.eta is not None and (per_later is not None or left == 0):
            eta = p.eta + left * (per_later or 0.0)
        self.progress(ClipProgress(p.scale, p.scales, p.iteration, p.iterations, p.loss, p.content, p.style, p.tv,
                                   time.monotonic() - self.t_start, eta, p.tile, p.tiles, frame=i + 1,
                                   frames=total_frames, frame_eta=p.eta))

    def saver(self, i: int) -> Callable[[dict[str, Any]], None]:
        """The engine's checkpoint inside frame ``i``, saved with the frame's number."""
        checkpoint = self.checkpoint

        def save_state(state: dict[str, Any]) -> None:
            checkpoint({**state, "frame": i})

        return save_state


LOSS_KEYS = ("loss", "content", "style", "tv")


def frame_record(i: int, frame: Frame, start: float, result: Any, seconds: float,
                 reliable: float | None) -> dict[str, Any]:
    """What the frame store keeps of one finished frame."""
    return {"frame": i, "source_frame": frame.index, "time": round(frame.time - start, 6),
            "iterations": result.iterations, "seconds": round(seconds, 3),
            "loss": {k: float(v) for k, v in result.final.items() if k in LOSS_KEYS},
            "reliable": reliable, "stopped_by": result.stopped_by, "precision": list(result.precision),
            "shapes": [list(s) for s in result.shapes], "evaluations": result.evaluations,
            "initial": {k: float(v) for k, v in result.initial.items() if k in LOSS_KEYS}}


def totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The engine's result fields summed or taken over the frames' records."""
    iterations = evaluations = 0
    precisions: list[str] = []
    shapes: list[tuple[int, int]] = []
    stopped_by = "iterations"
    for r in records:
        iterations += r["iterations"]
        evaluations += r.get("evaluations", 0)
        for pr in r.get("precision", []):
            if pr not in precisions:
                precisions.append(pr)
        for s in r.get("shapes", []):
            if tuple(s) not in shapes:
                shapes.append(tuple(s))
        if r.get("stopped_by") == "time_limit":
            stopped_by = "time_limit"
    initial = dict(records[0].get("initial", {})) if records else {}
    return {"iterations": iterations, "evaluations": evaluations, "precision": precisions, "shapes": shapes,
            "stopped_by": stopped_by, "initial": initial, "final": records[-1]["loss"] if records else {},
            "history": [{"frame": r["frame"] + 1, "iteration": r["iterations"], **r["loss"]} for r in records]}


def frame_durations(records: list[dict[str, Any]], loop: FrameLoop) -> tuple[list[float], float, bool]:
    """How long each frame shows (the last one: to the part's end, or a usual step), the
    last one's, and whether the rate is variable."""
    fps = loop.info.fps
    times = [r["time"] for r in records]
    steps = np.diff(times) if len(times) > 1 else np.asarray([1.0 / fps])
    last = (loop.end - loop.start - times[-1]) if loop.end is not None else float(np.median(steps))
    if not 0 < last <= 4 * float(np.median(steps)) + 1e-6:
        last = float(np.median(steps))
    durations = list(np.diff(times)) + [last]
    variable = len(times) > 2 and float(np.ptp(steps)) > 0.5 / max(fps, 1.0)
    return durations, last, variable


def encode_clip(loop: FrameLoop, records: list[dict[str, Any]], overwrite: bool,
                audio_opener: Callable[[Path], Any] | None) -> ClipResult:
    """The finished frames encoded to the output, with the source's frame times and sound."""
    info, store, start, end = loop.info, loop.store, loop.start, loop.end
    t_encode = time.monotonic()
    durations, last, variable = frame_durations(records, loop)
    audio = None
    if info.audio and info.kind == "av":
        audio = AudioSource(Path(info.path), start, end, audio_opener)
    writer = ClipWriter(loop.output, loop.size, info.fps, audio=audio, variable_rate=variable, notes=loop.notes)
    try:
        for r, d in zip(records, durations):
            writer.write(store.load(r["frame"]), r["time"], float(d))
        last_image = store.load(records[-1]["frame"]).astype(np.float32)
        written = writer.finish(overwrite=overwrite)
    except BaseException:
        writer.abort()
        raise
    encode_s = time.monotonic() - t_encode
    loop.say("encoded %d frames to %s in %.1fs", len(records), written.name, encode_s)
    used = {"frames": len(records), "first_frame": records[0]["source_frame"],
            "last_frame": records[-1]["source_frame"], "start": round(start, 4),
            "end": round(records[-1]["time"] + last + start, 4), "size": list(loop.size),
            "audio": writer.audio_mode if audio is not None else None}
    later = [r["seconds"] for r in records[1:]]
    timings = {"total": round(time.monotonic() - loop.t_start, 3), "encode": round(encode_s, 3),
               "optimize": round(sum(r["seconds"] for r in records), 3),
               "first_frame": records[0]["seconds"] if records else None,
               "later_frame_mean": round(float(np.mean(later)), 3) if later else None}
    return ClipResult(image=last_image, alpha=None, seed=loop.seed, timings=timings, notes=writer.notes,
                      output=written, info=info, frames=records, used=used, **totals(records))


def sha_of(info: ClipInfo) -> str:
    """What identifies the clip's decoded frames for the frame store (its header)."""
    return json.dumps([info.container, info.codec, info.width, info.height, info.rotation, info.fps, info.duration,
                       info.frames])

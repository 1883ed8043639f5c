"""Writing a stylized clip: H.264 MP4 with the source's sound copied unchanged by default.

Each output kind, by the name's extension:

====================  ===========================================================
``.mp4`` ``.mov``     H.264 (libx264, yuv420p, CRF 18); audio copied packet for packet
``.mkv``              H.264; any audio copied
``.webm``             VP9 (libvpx-vp9, CRF 32); Opus/Vorbis copied, other audio made Opus
``.gif`` ``.webp``    animated, by Pillow (its palettes beat FFmpeg's default); no sound
``.png`` ``.jpg`` …   a folder of numbered frames, ``NAME/frame_000001.png`` …
====================  ===========================================================

Every frame keeps its time, so the output has the source's frame rate and duration, also
for a variable frame rate. H.264 and VP9 in 4:2:0 need even sides: the caller crops the
frames first (:func:`even_size`) and says so. The file (or folder) is written under a
temporary name in the destination folder and renamed into place when it is complete, so
nobody ever sees half a video.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from nstd.atomic import fsync_dir, numbered
from nstd.errors import ParamError

#: The clock of the written streams: fine enough for any frame time (as MPEG uses).
TIME_BASE = Fraction(1, 90000)
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
ANIMATIONS = {".gif": "GIF", ".webp": "WEBP"}
FRAME_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
#: Every extension a clip's output may have.
OUTPUT_EXTS = set(CONTAINERS) | set(ANIMATIONS) | set(FRAME_FORMATS)
#: Audio each container takes as it is; anything else is re-encoded (AAC, or Opus for WebM).
AUDIO_OK = {"mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac", "mp2"},
            "mov": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac", "mp2", "pcm_s16le", "pcm_s24le",
                    "pcm_s16be", "pcm_f32le"},
            "matroska": None,  # takes anything
            "webm": {"opus", "vorbis"}}
AUDIO_FALLBACK = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "libopus"}


def output_kind(path: Path | str) -> str:
    """container | animation | frames, by the extension; unknown ones are a parameter error."""
    ext = Path(path).suffix.lower()
    if ext in CONTAINERS:
        return "container"
    if ext in ANIMATIONS:
        return "animation"
    if ext in FRAME_FORMATS:
        return "frames"
    raise ParamError(f"output {Path(path).name}: a clip can be written as {', '.join(sorted(CONTAINERS))}, "
                     f"{', '.join(sorted(ANIMATIONS))} (animated) or {', '.join(sorted(FRAME_FORMATS))} (a folder "
                     "of frames).")


#: What an animated output may hold in memory: Pillow keeps every frame until it writes the file.
ANIMATION_BYTES = 512 * 2**20


def check_animation(path: Path | str, frames: int, width: int, height: int) -> None:
    """Refuse an animated GIF/WebP whose frames would not fit in :data:`ANIMATION_BYTES`."""
    need = frames * width * height * 3
    if output_kind(path) == "animation" and need > ANIMATION_BYTES:
        most = ANIMATION_BYTES // (width * height * 3)
        raise ParamError(f"output {Path(path).name}: an animated {Path(path).suffix.lower()} holds every frame in "
                         f"memory while it is written, and {frames} frames of {width}x{height} would need "
                         f"{need / 2**20:.0f} MiB (at most {ANIMATION_BYTES // 2**20} MiB, {most} such frames). Ask "
                         "for .mp4 or .webm, a smaller size, or a shorter duration.")


def even_size(width: int, height: int, path: Path | str) -> tuple[int, int]:
    """The size a clip can be encoded at: H.264/VP9 in 4:2:0 need even sides (an odd last
    row or column is cropped; animations and frames keep any size)."""
    if output_kind(path) != "container":
        return width, height
    return width - width % 2, height - height % 2


@dataclass
class AudioSource:
    """Where the sound comes from: a clip file, and the part of it used (seconds)."""

    path: Path
    start: float = 0.0
    end: float | None = None
    opener: Callable[[Path], Any] | None = None  # file object for the path (the inbox's safe open)


class AudioRemux:
    """The sound of an :class:`AudioSource` into an open output container: copied when the
    container takes its codec, else re-encoded; interleaved with the video by time."""

    def __init__(self, src: AudioSource, out: Any, fmt: str, dest: Path, notes: list[str]) -> None:
        """Raises :class:`LookupError` when the source has no sound PyAV can read."""
        import av

        self.src, self.out = src, out
        self._in = self._packets = self._pending = None
        self.fh = src.opener(src.path) if src.opener else open(src.path, "rb")
        try:
            self._in = av.open(self.fh, "r", metadata_errors="ignore")
        except av.error.FFmpegError:
            self.fh.close()
            raise LookupError("no readable sound") from None
        if not self._in.streams.audio:
            self.close_in()
            raise LookupError("no sound")
        ins = self._in.streams.audio[0]
        name = ins.codec_context.name
        ok = AUDIO_OK[fmt]
        self.copy = ok is None or name in ok
        if self.copy:
            self.stream = out.add_stream_from_template(ins)
        else:
            codec = AUDIO_FALLBACK[fmt]
            rate = 48000 if codec == "libopus" else (ins.codec_context.sample_rate or 48000)
            self.stream = out.add_stream(codec, rate=rate)
            layout = ins.codec_context.layout.name if ins.codec_context.layout else "stereo"
            self.stream.layout = layout if layout in ("mono", "stereo") else "stereo"
            self._resampler = av.AudioResampler(format=self.stream.codec_context.format.name,
                                                layout=self.stream.layout.name, rate=rate)
            notes.append(f"the sound ({name}) cannot go into {dest.suffix} as it is: re-encoded as "
                         f"{codec.removeprefix('lib')}")
        self._packets = self._items(ins)

    def _items(self, ins: Any) -> Iterator[tuple[float, Any]]:
        """(time, packet or frames) of the part used, shifted to the output's clock."""
        src = self.src
        tb = ins.time_base
        off = 0 if not src.start else int(round(src.start / tb))
        if src.start:
            self._in.seek(off, stream=ins, backward=True)
        for packet in self._in.demux(ins):
            if packet.pts is None or packet.dts is None:
                continue
            t = float(packet.pts * tb)
            if src.start and t < src.start - 1e-6:
                continue
            if src.end is not None and t >= src.end - 1e-6:
                break
            if self.copy:
                if off:
                    packet.pts, packet.dts = packet.pts - off, packet.dts - off
                packet.stream = self.stream
                yield t - src.start, packet
            else:
                for frame in packet.decode():
                    frame.pts = None
                    for resampled in self._resampler.resample(frame):
                        yield t - src.start, resampled

    def mux_until(self, t: float | None, mux: Callable[[Any], None]) -> None:
        """Interleave: the sound up to ``t`` seconds (None: all that is left); ``mux``
        writes encoded packets."""
        if self._packets is None:
            return
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    self._packets = None
                    if not self.copy:
                        mux(self.stream.encode(None))
                    return
            at, item = self._pending
            if t is not None and at > t:
                return
            self._pending = None
            if self.copy:
                self.out.mux(item)
            else:
                mux(self.stream.encode(item))

    def close_in(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None
            self.fh.close()


@dataclass
class ClipWriter:
    """Frames in, one finished file (or folder) out; see the module's table.

    ``write(rgb, t, duration)`` for every frame in order (``t``: seconds from the output's
    start), then :meth:`finish` to move it into place, or :meth:`abort`.
    """

    dest: Path
    size: tuple[int, int]
    fps: float
    audio: AudioSource | None = None
    variable_rate: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dest = Path(self.dest)
        self.kind = output_kind(self.dest)
        ext = self.dest.suffix.lower()
        w, h = self.size
        if self.kind == "container" and (w % 2 or h % 2):
            raise ValueError(f"{w}x{h}: H.264/VP9 need even sides; crop the frames first (even_size)")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.parent / f".nstd.{secrets.token_hex(6)}.tmp"
        self.count, self._frames = 0, []
        self._remux: AudioRemux | None = None
        if self.kind == "frames":  # out.png: the folder out/ of out/frame_000001.png …
            self.dest = self.dest.with_suffix("")
            self.tmp.mkdir()
            self._frame_format, self._frame_ext = FRAME_FORMATS[ext], ext
        elif self.kind == "container":
            self._open_container(CONTAINERS[ext])
        if self.audio is not None and self.kind != "container":
            self.notes.append(f"the sound is not kept: {ext} holds no audio")

    # --- containers ----------------------------------------------------------------------

    def _open_container(self, fmt: str) -> None:
        import av

        self._fmt = fmt
        # mp4: the index first, so it plays while it downloads
        self.out = av.open(str(self.tmp), "w", format=fmt,
                           options={"movflags": "+faststart"} if fmt in ("mp4", "mov") else {})
        rate = Fraction(self.fps).limit_denominator(100_000)
        if fmt == "webm":
            opts = {"crf": "32", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
            self.video = self.out.add_stream("libvpx-vp9", rate=rate, options=opts)
        else:
            # B-frames reorder the decode times, which breaks the last frame's duration in
            # MP4 when frames are unevenly spaced: a variable rate is written without them.
            opts = {"crf": "18", "preset": "medium", **({"bf": "0"} if self.variable_rate else {})}
            self.video = self.out.add_stream("libx264", rate=rate, options=opts)
        self.video.width, self.video.height = self.size
        self.video.pix_fmt = "yuv420p"
        self.video.codec_context.time_base = TIME_BASE
        self.video.time_base = TIME_BASE
        self._durations: dict[int, int] = {}
        if self.audio is not None:
            self._open_audio()

    def _open_audio(self) -> None:
        try:
            self._remux = AudioRemux(self.audio, self.out, self._fmt, self.dest, self.notes)
        except LookupError:
            self.audio = None

    @property
    def audio_mode(self) -> str | None:
        """How the sound went in: copied, re-encoded, or None (not kept)."""
        if self.audio is None or self._remux is None:
            return None
        return "copied" if self._remux.copy else "re-encoded"

    def _mux_audio_until(self, t: float | None) -> None:
        if self._remux is not None:
            self._remux.mux_until(t, self._mux)

    def _mux(self, packets: Any) -> None:
        for p in packets:
            if p.stream is self.video and p.pts in self._durations:
                p.duration = self._durations.pop(p.pts)
            self.out.mux(p)

    # --- frames in -----------------------------------------------------------------------

    def write(self, rgb: np.ndarray, t: float, duration: float) -> None:
        """One frame (RGB, 0–255), shown at ``t`` seconds for ``duration`` seconds."""
        pixels = np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
        if pixels.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame {self.count}: {pixels.shape[1]}x{pixels.shape[0]}, expected "
                             f"{self.size[0]}x{self.size[1]}")
        self.count += 1
        if self.kind == "frames":
            from PIL import Image

            Image.fromarray(pixels, "RGB").save(self.tmp / f"frame_{self.count:06d}{self._frame_ext}",
                                                self._frame_format, **({"quality": 95} if
                                                                       self._frame_format == "JPEG" else {}))
        elif self.kind == "animation":
            check_animation(self.dest, self.count, *self.size)  # the header's count may have been low
            self._frames.append((pixels, max(1, int(round(duration * 1000)))))
        else:
            import av

            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = int(round(t / TIME_BASE)), TIME_BASE
            self._durations[frame.pts] = max(1, int(round((t + duration) / TIME_BASE)) - frame.pts)
            self._mux_audio_until(t)
            self._mux(self.video.encode(frame))

    # --- done ----------------------------------------------------------------------------

    def _close(self) -> None:
        if self.kind == "container":
            self._mux(self.video.encode(None))
            self._mux_audio_until(None)
            self.out.close()
            self._close_audio_in()
        elif self.kind == "animation":
            from PIL import Image

            images = [Image.fromarray(p, "RGB") for p, _ in self._frames]
            fmt = ANIMATIONS[self.dest.suffix.lower()]
            extra = {"quality": 90} if fmt == "WEBP" else {}
            images[0].save(self.tmp, fmt, save_all=True, append_images=images[1:],
                           duration=[d for _, d in self._frames], loop=0, **extra)
        if self.tmp.is_file():
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())

    def _close_audio_in(self) -> None:
        if self._remux is not None:
            self._remux.close_in()

    def finish(self, overwrite: bool = True) -> Path:
        """Close the file and rename it to ``dest`` (``overwrite=False``: ``NAME-1.mp4`` … if
        ``dest`` is taken). Returns where it is."""
        if self.count == 0:
            self.abort()
            raise ValueError("no frames were written")
        try:
            self._close()
            target = self._place(overwrite)
        except BaseException:
            self.abort()
            raise
        fsync_dir(target.parent)
        return target

    def _place(self, overwrite: bool) -> Path:
        if overwrite:
            if self.tmp.is_dir():
                if self.dest.is_dir() and not self.dest.is_symlink():
                    old = self.dest.parent / f".nstd.{secrets.token_hex(6)}.old"
                    os.rename(self.dest, old)
                    os.rename(self.tmp, self.dest)
                    shutil.rmtree(old)
                    return self.dest
                os.rename(self.tmp, self.dest)
                return self.dest
            os.replace(self.tmp, self.dest)
            return self.dest
        return place_new(self.tmp, self.dest)

    def abort(self) -> None:
        """Drop what was written; the destination is never touched."""
        try:
            if self.kind == "container" and getattr(self, "out", None) is not None:
                try:
                    self.out.close()
                except Exception:  # noqa: BLE001 - closing a half-written file may complain
                    pass
            self._close_audio_in()
        finally:
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self.tmp.unlink(missing_ok=True)


def place_new(tmp: Path, dest: Path) -> Path:
    """Rename a finished file or folder ``tmp`` to ``dest``, or ``dest-1`` … when taken:
    never over anything (a file through link(), which fails on a taken name)."""
    for n in range(10_000):
        candidate = numbered(dest, n)
        if tmp.is_dir():
            if candidate.exists() or candidate.is_symlink():
                continue
            os.rename(tmp, candidate)
            return candidate
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        except OSError:  # SMB and some FUSE mounts have no hard links
            if candidate.exists():
                continue
            os.rename(tmp, candidate)
            return candidate
        os.unlink(tmp)
        return candidate
    raise FileExistsError(f"{dest}: 10000 numbered variants already exist")

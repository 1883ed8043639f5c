"""Reading a clip frame by frame, whatever holds it, treating the file as an attacker's.

What counts as a clip: any container FFmpeg's libraries read through PyAV (mp4, mov, mkv,
webm, avi, …, with H.264, H.265, VP9, AV1 where the wheel has the decoder), an animated
GIF, an animated WebP (Pillow: FFmpeg has no animated-WebP decoder) and a folder of
numbered frames (``frame_0001.png`` …, read at :data:`FOLDER_FPS`).

Frames come one at a time (:meth:`Clip.frames`), already turned upright (the rotation in
the container's display matrix is applied) and resized to the size asked for, so memory
does not grow with the clip's length. Every problem is a :class:`VideoError` naming the
file and the problem: truncated or corrupt data, no video stream, zero frames, a name
that says .mp4 over something else, a clip over ``limits.input_pixels``,
``limits.video_seconds`` or ``limits.frames``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from nstd.errors import ImageError
from nstd.images import LoadedImage, resize
from nstd.spool.jobs import VIDEO_EXTS  # the extensions of a clip: jobs.py decides what content is

#: Extensions that are a clip only when the file holds more than one frame.
ANIMATED_EXTS = {".gif", ".webp"}
FRAME_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
#: A folder of frames has no clock of its own.
FOLDER_FPS = 25.0
#: What a container says it is, from its first bytes: (family, words for a message).
FAMILY_OF_EXT = {".mp4": "iso", ".m4v": "iso", ".mov": "iso", ".3gp": "iso", ".mkv": "matroska",
                 ".webm": "matroska", ".avi": "avi", ".mpg": "ps", ".mpeg": "ps", ".ts": "ts", ".mts": "ts",
                 ".m2ts": "ts", ".ogv": "ogg", ".flv": "flv", ".gif": "gif", ".webp": "webp", ".wmv": "asf"}
VIDEO_FAMILIES = {"iso": "an MP4/QuickTime file", "matroska": "a Matroska/WebM file", "avi": "an AVI file",
                  "ps": "an MPEG program stream", "ts": "an MPEG transport stream", "ogg": "an Ogg file",
                  "flv": "an FLV file", "gif": "a GIF", "webp": "a WebP file", "asf": "a Windows Media file"}
OTHER_FAMILIES = {"png": "a PNG image", "jpeg": "a JPEG image", "tiff": "a TIFF image", "bmp": "a BMP image",
                  "pdf": "a PDF document", "zip": "a ZIP archive", "mp3": "an MP3 audio file",
                  "wav": "a WAV audio file", "flac": "a FLAC audio file", "text": "text", "empty": "empty"}

#: First bytes of each family, checked in order (a transport stream, by its sync bytes, after).
MAGIC = [(b"\x1a\x45\xdf\xa3", "matroska"), ((b"GIF87a", b"GIF89a"), "gif"), (b"OggS", "ogg"), (b"FLV", "flv"),
         (b"\x00\x00\x01\xba", "ps"), (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"), (b"\x89PNG", "png"),
         (b"\xff\xd8\xff", "jpeg"), ((b"II*\x00", b"MM\x00*"), "tiff"), (b"BM", "bmp"), (b"%PDF", "pdf"),
         (b"PK\x03\x04", "zip"), ((b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"), "mp3"), (b"fLaC", "flac")]
RIFF_FAMILIES = {b"WEBP": "webp", b"AVI ": "avi", b"WAVE": "wav"}


class VideoError(ImageError):
    """A clip that cannot be used; ``arriving``: the data stops short (maybe still copying)."""


@dataclass(frozen=True)
class ClipLimits:
    """What one clip may cost: pixels per frame, seconds and frames used, bytes on disk."""

    input_pixels: int = 50_000_000
    video_seconds: float = 600.0
    frames: int = 15_000
    input_bytes: int | None = None  # checked with fstat before a byte is read; None: any

    @classmethod
    def of(cls, limits: Any) -> "ClipLimits":
        """From the daemon's ``limits`` section (or anything with those attributes)."""
        return cls(getattr(limits, "input_pixels", cls.input_pixels),
                   getattr(limits, "video_seconds", cls.video_seconds), getattr(limits, "frames", cls.frames),
                   getattr(limits, "input_bytes", None))


@dataclass
class Frame:
    """One decoded frame: its index in the source clip, its time in seconds from the clip's
    start, and RGB pixels 0–255 (float32, upright, at the size asked for)."""

    index: int
    time: float
    rgb: np.ndarray

    def as_image(self, source: str) -> LoadedImage:
        """The frame as the engine's content image (its hash names the frame's pixels)."""
        digest = hashlib.sha256(np.ascontiguousarray(self.rgb).tobytes()).hexdigest()
        return LoadedImage(self.rgb, None, f"{source}#frame{self.index}", digest)


@dataclass
class ClipInfo:
    """What the header says, and what decoding found (``variable_rate``, ``decoded``)."""

    path: str
    kind: str  # av | pillow | folder
    container: str
    codec: str
    width: int  # as shown: after the rotation
    height: int
    rotation: int  # degrees counter-clockwise applied to the stored frames
    fps: float
    duration: float | None
    frames: int | None  # as the header says (None: not said)
    audio: str | None  # the audio codec, if the clip has sound
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "container": self.container, "codec": self.codec,
                "size": [self.width, self.height], "rotation": self.rotation, "fps": round(self.fps, 4),
                "duration": None if self.duration is None else round(self.duration, 4), "frames": self.frames,
                "audio": self.audio}


def is_animated(path: Path) -> bool:
    """A GIF or WebP with more than one frame (read from its header, never through a link)."""
    from PIL import Image

    try:
        with open_regular(path, None) as fh, Image.open(fh) as im:
            return getattr(im, "n_frames", 1) > 1
    except Exception:  # noqa: BLE001 - unreadable: the still path says why
        return False


def is_clip_path(path: Path) -> bool:
    """Whether content is to be read as a clip: a video extension, an animated GIF or WebP,
    or a folder (of numbered frames)."""
    path = Path(path)
    ext = path.suffix.lower()
    if path.is_dir() and not path.is_symlink():
        return True
    return ext in VIDEO_EXTS or (ext in ANIMATED_EXTS and is_animated(path))


def sniff(head: bytes) -> str | None:
    """The family a file's first bytes say it is (None: not one nstd knows)."""
    if not head:
        return "empty"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        return "iso"
    if head.startswith(b"RIFF"):
        riff = RIFF_FAMILIES.get(head[8:12])
        if riff is not None:
            return riff
    for prefixes, family in MAGIC:
        if head.startswith(prefixes):
            return family
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "ts"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text" if all(c.isprintable() or c in "\r\n\t" for c in text) else None


def check_head(head: bytes, name: str) -> str | None:
    """The family of a clip file from its first bytes (None: not one nstd knows, FFmpeg may);
    a :class:`VideoError` when they say it is no video at all (text, a photo, an empty file)."""
    family = sniff(head)
    if family not in OTHER_FAMILIES:
        return family
    if family == "empty":
        raise VideoError(f"{name}: the file is empty; copy the clip again.")
    said = Path(name).suffix.lower().lstrip(".").upper() or "a clip"
    raise VideoError(f"{name}: the name says {said}, but the file is {OTHER_FAMILIES[family]}, not a video. Give it "
                     "its own extension, or export the clip again.")


def open_regular(path: Path, max_bytes: int | None) -> BinaryIO:
    """``path`` opened for reading, never through a link, its size checked before a byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise VideoError(f"{path.name}: is a symbolic link; nstd never follows links. Copy the clip itself "
                             "in.") from None
        raise VideoError(f"{path.name}: cannot open the clip ({exc.strerror or exc}).") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise VideoError(f"{path.name}: is not a regular file; put the clip itself in.")
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise VideoError(f"{path.name}: {st.st_size:,} bytes is over the limit of {max_bytes:,} bytes "
                         "(limits.input_bytes) for this clip; trim it or raise limits.input_bytes.")
    return os.fdopen(fd, "rb")


def _numbered(folder: Path) -> list[Path]:
    """A folder's frames in their numbers' order (``f2.png`` before ``f10.png``)."""
    def key(p: Path) -> tuple:
        return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name.lower()))

    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise VideoError(f"{folder.name}/: cannot list the folder of frames ({exc.strerror or exc}).") from None
    files = [p for p in entries if p.suffix.lower() in FRAME_EXTS and not p.name.startswith(".")
             and stat.S_ISREG(os.lstat(p).st_mode)]
    return sorted(files, key=key)


class FrameSource:
    """What one kind of input gives a :class:`Clip`: ``info`` (from the header),
    ``frames(start)`` ((index, time, RGB) in order), its sound and :meth:`close`."""

    info: ClipInfo
    _held: Any = None  # the open container or image

    def audio_stream(self) -> Any:
        """The first audio stream (PyAV), or None."""
        return None

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None


class AvSource(FrameSource):
    """The frames of a container FFmpeg reads (PyAV): its header, then decoded frames."""

    def __init__(self, path: Path, fh: BinaryIO, family: str | None) -> None:
        self.path, self._fh = path, fh
        self._pending: Any = None
        self._decoder: Any = None
        try:
            self.info = self._probe(family)
        except BaseException:
            self.close()
            raise

    def _probe(self, family: str | None) -> ClipInfo:
        av = require("av")

        p = self.path
        try:
            self._held = av.open(self._fh, "r", metadata_errors="ignore")
        except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as exc:
            if family is None:
                raise VideoError(f"{p.name}: not a video nstd can read (FFmpeg: {_why(exc)}). Use MP4, MOV, MKV, "
                                 "WebM, an animated GIF/WebP or a folder of frames.") from None
            raise VideoError(f"{p.name}: the clip is truncated or corrupt: {VIDEO_FAMILIES[family]} whose header "
                             f"cannot be read (FFmpeg: {_why(exc)}). Copy it again, or export it again.",
                             arriving=True) from None
        c = self._held
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        if not c.streams.video:
            what = f"only audio ({audio})" if audio else "no video stream"
            raise VideoError(f"{p.name}: the file holds {what}; nstd needs a clip with pictures.")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        if not cc.width or not cc.height:
            raise VideoError(f"{p.name}: the video stream has no picture size; the clip is corrupt. Export it "
                             "again.")
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else FOLDER_FPS
        duration = None
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif c.duration is not None:
            duration = c.duration / 1_000_000
        self._decoder = c.decode(vs)
        try:  # the rotation is on the frames (the display matrix): the first one says it
            self._pending = next(self._decoder, None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{p.name}: the clip is truncated or corrupt: its first frame does not decode "
                             f"(FFmpeg: {_why(exc)}). Copy it again, or export it again.", arriving=True) from None
        if self._pending is None:
            raise VideoError(f"{p.name}: the clip holds no video frames; nothing to stylize.")
        rotation = int(round(getattr(self._pending, "rotation", 0) or 0)) % 360 // 90 * 90
        w, h = (cc.height, cc.width) if rotation % 180 else (cc.width, cc.height)
        return ClipInfo(str(p), "av", c.format.name, cc.name, w, h, rotation, fps, duration,
                                      vs.frames or None, audio)

    def frames(self, start: float) -> Iterator[tuple[int, float, np.ndarray]]:
        import av

        c, name = self._held, self.path.name
        vs = c.streams.video[0]
        first = None
        pending, decoder = self._pending, self._decoder
        self._pending = None
        if pending is None or start > 0:  # a second pass, or a trim: to the key frame before start
            pending = None
            try:
                c.seek(int(start / vs.time_base) if vs.time_base else 0, stream=vs, backward=True, any_frame=False)
            except av.error.FFmpegError:
                c.seek(0, stream=vs)
            decoder = c.decode(vs)
        index, last_t, steps, t0 = 0, None, [], None
        try:
            for frame in itertools.chain([pending] if pending is not None else [], decoder):
                t = frame.time
                if t is None:
                    t = (last_t + 1.0 / self.info.fps) if last_t is not None else 0.0
                if t0 is None:  # the clip's clock starts at its first frame's time
                    t0 = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base \
                        else t
                t = t - t0
                if last_t is not None:
                    steps.append(t - last_t)
                last_t = t
                if start > 0 and first is None:
                    first = int(round(t * self.info.fps))
                    index = first
                rgb = frame.to_ndarray(format="rgb24")
                if self.info.rotation:
                    rgb = np.rot90(rgb, self.info.rotation // 90)
                yield index, t, np.ascontiguousarray(rgb, dtype=np.float32)
                index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{name}: the clip is truncated or corrupt after frame {index} "
                             f"(FFmpeg: {_why(exc)}); copy it again, or export it again.") from None
        self._vfr(steps)
        promised = self.info.frames
        if start == 0 and promised and index < promised * 0.98 - 1:
            raise VideoError(f"{name}: the clip is truncated: its header promises {promised} frames, but only "
                             f"{index} decode. Copy it again, or export it again.")

    def _vfr(self, steps: list[float]) -> None:
        if len(steps) >= 2:
            lo, hi = min(steps), max(steps)
            if hi - lo > 0.5 / max(self.info.fps, 1.0):
                self.info.notes.append(f"variable frame rate (frames {lo * 1000:.0f}–{hi * 1000:.0f} ms apart): "
                                       "each frame keeps its own time in the output")


    def audio_stream(self) -> Any:
        """The first audio stream (PyAV), or None."""
        if self._held is None or not self._held.streams.audio:
            return None
        return self._held.streams.audio[0]


class PillowSource(FrameSource):
    """The frames of an animated WebP (Pillow: FFmpeg has no animated-WebP decoder)."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path, self._fh = path, fh
        try:
            self.info = self._probe()
        except BaseException:
            self.close()
            raise

    def _probe(self) -> ClipInfo:
        from PIL import Image

        p = self.path
        try:
            self._held = Image.open(self._fh)
            w, h = self._held.size
            n = getattr(self._held, "n_frames", 1)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data
            raise VideoError(f"{p.name}: the animated WebP is truncated or corrupt ({type(exc).__name__}); copy "
                             "it again.", arriving=True) from None
        durations = self._held.info.get("duration") or 100
        fps = 1000.0 / durations if durations else FOLDER_FPS
        return ClipInfo(str(p), "pillow", "webp", "webp", w, h, 0, fps, n / fps, n, None)

    def frames(self, start: float) -> Iterator[tuple[int, float, np.ndarray]]:
        from PIL import ImageSequence

        t, name = 0.0, self.path.name
        try:
            for i, im in enumerate(ImageSequence.Iterator(self._held)):
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
                yield i, t, rgb
                t += (im.info.get("duration") or 1000.0 / self.info.fps) / 1000.0
        except (OSError, ValueError, EOFError) as exc:
            raise VideoError(f"{name}: the animated WebP is truncated or corrupt ({type(exc).__name__}); copy it "
                             "again.") from None


class FolderSource(FrameSource):
    """The frames of a folder of numbered images, read at :data:`FOLDER_FPS`."""

    def __init__(self, path: Path, limits: ClipLimits) -> None:
        self.path, self.limits = path, limits
        self.info = self._probe()

    def _probe(self) -> ClipInfo:
        from PIL import Image

        frames = _numbered(self.path)
        if not frames:
            raise VideoError(f"{self.path.name}/: holds no frames (numbered .png/.jpg/.tif images); a folder is "
                             "a clip only with its frames in it.")
        self._folder = frames
        try:
            with open_regular(frames[0], self.limits.input_bytes) as fh, Image.open(fh) as im:
                w, h = im.size
        except Exception as exc:  # noqa: BLE001
            raise VideoError(f"{self.path.name}/{frames[0].name}: the first frame cannot be read "
                             f"({type(exc).__name__}: {exc}).") from None
        n = len(frames)
        return ClipInfo(str(self.path), "folder", "folder", frames[0].suffix.lstrip(".").lower(),
                                      w, h, 0, FOLDER_FPS, n / FOLDER_FPS, n, None)

    def frames(self, start: float) -> Iterator[tuple[int, float, np.ndarray]]:
        from PIL import Image

        w, h = self.info.width, self.info.height
        for i, p in enumerate(self._folder):
            t = i / self.info.fps
            if t < start - 1e-6:
                continue
            try:
                with open_regular(p, self.limits.input_bytes) as fh, Image.open(fh) as im:
                    if im.size != (w, h):
                        raise VideoError(f"{self.path.name}/{p.name}: {im.size[0]}×{im.size[1]} px, but the first "
                                         f"frame is {w}×{h}; every frame of a clip has one size.")
                    rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
            except VideoError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise VideoError(f"{self.path.name}/{p.name}: the frame cannot be read ({type(exc).__name__}: "
                                 f"{exc}).") from None
            yield i, t, rgb


class Clip:
    """An opened clip: :attr:`info` from its header, :meth:`frames` to decode it (from a
    frame source per input kind: :class:`AvSource`, :class:`PillowSource`, :class:`FolderSource`).

    Use as a context manager (or call :meth:`close`): a container holds an open file.
    """

    def __init__(self, path: Path | str, limits: ClipLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or ClipLimits()
        self._fh: BinaryIO | None = None
        self._source: FrameSource | None = None
        try:
            self.info = self._checked(self._probe())
        except BaseException:
            self.close()
            raise

    # --- header --------------------------------------------------------------------------

    def _probe(self) -> ClipInfo:
        p = self.path
        if p.is_dir() and not p.is_symlink():
            self._source = FolderSource(p, self.limits)
            return self._source.info
        self._fh = open_regular(p, self.limits.input_bytes)
        head = self._fh.read(512)
        self._fh.seek(0)
        family = check_head(head, p.name)
        said = FAMILY_OF_EXT.get(p.suffix.lower())
        name = p.suffix.lower().lstrip(".").upper() or "a clip"
        if family == "webp" or (family is None and said == "webp"):
            self._source = PillowSource(p, self._fh)
            return self._source.info
        self._source = AvSource(p, self._fh, family)
        info = self._source.info
        if said is not None and family is not None and family != said and family in VIDEO_FAMILIES:
            info.notes.append(f"{p.name} is {VIDEO_FAMILIES[family]}, though its name says {name}")
        return info

    def _checked(self, info: ClipInfo) -> ClipInfo:
        """The header's numbers against the limits, before any frame is decoded."""
        name = self.path.name + ("/" if info.kind == "folder" else "")
        pixels = info.width * info.height
        if pixels > self.limits.input_pixels:
            raise VideoError(f"{name}: {info.width}×{info.height} = {pixels:,} pixels a frame is over the limit of "
                             f"{self.limits.input_pixels:,}; scale the clip down or raise limits.input_pixels.")
        return info

    def check_length(self, start: float = 0.0, duration: float | None = None) -> tuple[float, float | None]:
        """The part of the clip a job uses, (start, end or None), refused when it is over the
        limits by what the header says (decoding checks again, frame by frame)."""
        name = self.path.name + ("/" if self.info.kind == "folder" else "")
        total = self.info.duration
        if total is not None and start >= total > 0:
            raise VideoError(f"{name}: start {start:g} s is at or past the end of the clip ({total:.2f} s).")
        end = start + duration if duration is not None else None
        if total is not None:
            end = total if end is None else min(end, total)
        if end is not None:
            seconds = end - start
            if seconds > self.limits.video_seconds:
                raise VideoError(f"{name}: {_hms(seconds)} of video is over the limit of "
                                 f"{_hms(self.limits.video_seconds)} (limits.video_seconds); trim it with start "
                                 "and duration, or raise the limit.")
            frames = int(round(seconds * self.info.fps))
            if frames > self.limits.frames:
                raise VideoError(f"{name}: about {frames:,} frames ({_hms(seconds)} at {self.info.fps:g} fps) is "
                                 f"over the limit of {self.limits.frames:,} (limits.frames); trim it with start "
                                 "and duration, or raise the limit.")
        return start, end

    # --- frames --------------------------------------------------------------------------

    def frames(self, size: tuple[int, int] | None = None, start: float = 0.0,
               duration: float | None = None) -> Iterator[Frame]:
        """Decode frames whose time is in [start, start + duration), upright, resized to
        ``size`` (w, h; None: as stored). Raises :class:`VideoError` for data that stops
        short or is corrupt, and when more frames come than the limits allow."""
        start, end = self.check_length(start, duration)
        name = self.path.name + ("/" if self.info.kind == "folder" else "")
        count = 0
        for index, t, rgb in self._source.frames(start):
            if t < start - 1e-6:
                continue
            if end is not None and t >= end - 1e-6:
                break
            count += 1
            if count > self.limits.frames:
                raise VideoError(f"{name}: more than {self.limits.frames:,} frames (limits.frames); trim it with "
                                 "start and duration, or raise the limit.")
            if t - start > self.limits.video_seconds:
                raise VideoError(f"{name}: more than {_hms(self.limits.video_seconds)} of video "
                                 "(limits.video_seconds); trim it with start and duration, or raise the limit.")
            if size is not None and rgb.shape[:2] != (size[1], size[0]):
                rgb = resize(rgb, *size)
            yield Frame(index, t, rgb)
        if count == 0:
            where = f" from {start:g} s" if start else ""
            raise VideoError(f"{name}: the clip holds no video frames{where}; nothing to stylize.")

    # --- audio ---------------------------------------------------------------------------

    def audio_stream(self) -> Any:
        """The first audio stream (PyAV), or None."""
        return self._source.audio_stream() if self._source is not None else None

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "Clip":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_clip(path: Path | str, limits: ClipLimits | None = None) -> Clip:
    """:class:`Clip` for ``path`` (a file or a folder of frames); errors name the file."""
    return Clip(path, limits)


def require(module: str) -> Any:
    """PyAV or OpenCV, or an error that says how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise VideoError(f"video clips need {'PyAV' if module == 'av' else 'OpenCV'}, which is not installed: "
                         "pip install 'nstd[video]'.") from None


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0][:160] if text else type(exc).__name__


def _hms(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    h, rest = divmod(int(seconds), 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"



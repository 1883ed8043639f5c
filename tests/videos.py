"""Small synthetic clips made at test time with PyAV: a camera pan over a picture, so the
true motion of every frame is known."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import make_image


def textured(size: tuple[int, int], seed: int = 3) -> np.ndarray:
    """A picture with detail at every scale (smooth blobs plus blurred noise), uint8 RGB."""
    from scipy.ndimage import gaussian_filter

    w, h = size
    base = np.asarray(Image.open(make_image(Path(f"/tmp/nstd-test-pan-{seed}-{w}x{h}.png"), size, seed=seed)),
                      np.float32)
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(0, 40, base.shape).astype(np.float32), (1.2, 1.2, 0))
    return np.clip(base * 0.7 + noise + 40, 0, 255).astype(np.uint8)


def pan_frames(size=(48, 32), frames: int = 8, pan: int = 2, seed: int = 3) -> list[np.ndarray]:
    """``frames`` views of one picture, the window moving ``pan`` px right each frame (the
    content moves ``pan`` px left)."""
    w, h = size
    big = textured((w + pan * frames + 8, h + 8), seed)
    return [np.ascontiguousarray(big[4:4 + h, i * pan:i * pan + w]) for i in range(frames)]


def make_clip(path: Path, size=(48, 32), frames: int = 8, fps: int = 25, audio: bool = True, pan: int = 2,
              times: list[float] | None = None, rotation: int = 0, codec: str = "libx264",
              pictures: list[np.ndarray] | None = None, faststart: bool = True) -> Path:
    """An H.264 clip (``codec``) of a pan, with a sine tone as AAC sound (``audio``).

    ``times``: each frame's time in seconds (a variable frame rate); ``rotation``: the
    display matrix's rotation, degrees counter-clockwise.
    """
    import av

    pictures = pictures if pictures is not None else pan_frames(size, frames, pan)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[path.suffix.lower()]
    out = av.open(str(path), "w", format=fmt, options={"movflags": "+faststart"} if faststart and fmt == "mp4" else {})
    v = out.add_stream(codec, rate=fps, options={"bf": "0"} if times else {})
    v.width, v.height = pictures[0].shape[1], pictures[0].shape[0]
    v.pix_fmt = "yuv444p" if v.width % 2 or v.height % 2 else "yuv420p"  # odd sides: no 4:2:0
    tb = Fraction(1, 1000) if times else Fraction(1, fps)
    v.codec_context.time_base = tb
    if rotation:
        v.set_display_rotation(rotation)
    a = None
    if audio:
        a = out.add_stream("aac" if fmt != "webm" else "libopus", rate=48000 if fmt == "webm" else 8000)
        a.layout = "mono"
    for i, pic in enumerate(pictures):
        f = av.VideoFrame.from_ndarray(pic, format="rgb24")
        f.pts = int(round(times[i] / tb)) if times else i
        f.time_base = tb
        for p in v.encode(f):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    if a is not None:
        rate = a.codec_context.sample_rate
        seconds = (times[-1] + 0.04) if times else len(pictures) / fps
        n, chunk = 0, a.codec_context.frame_size or 1024
        while n < rate * seconds:
            tone = (0.3 * np.sin(np.arange(n, n + chunk) * 2 * np.pi * 440 / rate)).astype(np.float32)[None]
            fr = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            fr.sample_rate, fr.pts = rate, n
            n += chunk
            for p in a.encode(fr):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[float], dict]:
    """All frames (RGB uint8), their times, and facts about the file (PyAV)."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(vs):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time))
        facts = {"duration": c.duration / 1e6 if c.duration else None, "codec": vs.codec_context.name,
                 "size": (vs.codec_context.width, vs.codec_context.height),
                 "audio": c.streams.audio[0].codec_context.name if c.streams.audio else None}
    return frames, times, facts


def audio_packets(path: Path) -> list[bytes]:
    """The bytes of every audio packet, to show the sound was copied unchanged."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]

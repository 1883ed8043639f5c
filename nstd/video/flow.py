"""Optical flow between input frames, warping, and where the flow can be trusted.

The flow is OpenCV's DIS (Kroeger et al. 2016, ``cv2.DISOpticalFlow``), computed on the
*input* frames at the size they are stylized at, both ways: backward (each pixel of frame
t to where it was in frame t−1), which warps the previous stylized frame onto frame t, and
forward (t−1 to t), which checks it. The reliability mask follows Ruder et al. (2016,
"Artistic style transfer for videos", eq. 3–4): a pixel is unreliable where the two flows
disagree (it was hidden in t−1: a disocclusion),

    |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5,    w̃(x) = forward(x + ŵ(x)),  ŵ = backward,

or where it sits on a motion boundary, |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002, or where it
came in across the frame's edge (x + ŵ(x) outside frame t−1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: DIS presets: ultrafast, fast, medium. Medium is the one measured (docs/video.md).
PRESET = "medium"


def _cv2():
    import cv2

    return cv2


def _grey(rgb: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    return cv2.cvtColor(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def dis(preset: str = PRESET):
    cv2 = _cv2()
    code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
    return cv2.DISOpticalFlow_create(code)


def flow(src: np.ndarray, dst: np.ndarray, preset: str = PRESET) -> np.ndarray:
    """(h, w, 2) float32: for each pixel x of ``src``, ``dst`` shows it at x + flow(x)."""
    return dis(preset).calc(_grey(src), _grey(dst), None)


def warp(image: np.ndarray, flow_field: np.ndarray) -> np.ndarray:
    """``image`` sampled at x + flow(x) for every pixel x (bilinear, edges repeated)."""
    cv2 = _cv2()
    h, w = flow_field.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow_field[..., 0], gy + flow_field[..., 1]
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), mx, my, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def reliability(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(h, w) float32, 1 where warping by ``backward`` can be trusted, 0 at disocclusions
    and motion boundaries (see the module's formulas)."""
    fw = warp(forward, backward)  # the forward flow, read where each pixel came from
    total = fw + backward
    occluded = np.sum(total ** 2, -1) > 0.01 * (np.sum(fw ** 2, -1) + np.sum(backward ** 2, -1)) + 0.5
    du = np.gradient(backward[..., 0])
    dv = np.gradient(backward[..., 1])
    grad = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    boundary = grad > 0.01 * np.sum(backward ** 2, -1) + 0.002
    h, w = backward.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    sx, sy = gx + backward[..., 0], gy + backward[..., 1]
    outside = (sx < 0) | (sx > w - 1) | (sy < 0) | (sy > h - 1)  # came in across the frame's edge
    return (~(occluded | boundary | outside)).astype(np.float32)


@dataclass
class Motion:
    """How frame t relates to frame t−1: the backward flow and where it is reliable."""

    backward: np.ndarray  # (h, w, 2): pixel x of frame t was at x + backward(x) in t−1
    mask: np.ndarray  # (h, w): 1 reliable, 0 not

    def warp(self, previous: np.ndarray) -> np.ndarray:
        """``previous`` (a frame t−1 image) moved onto frame t."""
        return warp(previous, self.backward)

    @property
    def reliable(self) -> float:
        return float(self.mask.mean())


def motion(previous: np.ndarray, current: np.ndarray, preset: str = PRESET) -> Motion:
    """The flow both ways between two input frames, and its reliability mask."""
    backward = flow(current, previous, preset)
    forward = flow(previous, current, preset)
    return Motion(backward, reliability(backward, forward))


def warp_error(outputs: list[np.ndarray], inputs: list[np.ndarray], preset: str = PRESET) -> float:
    """Temporal warp error of a stylized clip: mean |O_t − warp(O_{t−1})| over reliable
    pixels (0–255 scale, per channel), the flow taken from the input frames. On the inputs
    themselves it is the floor the flow allows."""
    total, count = 0.0, 0.0
    for t in range(1, len(outputs)):
        m = motion(inputs[t - 1], inputs[t], preset)
        diff = np.abs(np.asarray(outputs[t], np.float32) - m.warp(outputs[t - 1])).mean(-1)
        total += float((diff * m.mask).sum())
        count += float(m.mask.sum())
    return total / max(count, 1.0)

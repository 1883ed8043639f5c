"""An independent numpy implementation of the origin project's loss.

Shares no code with the engine: its own conv (im2col), pooling, Gram and the
origin's normalisation (content / (4·H·W·C), style / (4·C²·(H·W)²)), so a bug in
the engine cannot hide in both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MEAN = np.array([123.68, 116.779, 103.939])
ORDER = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
         "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"]


def _conv_relu(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    cols = np.stack([p[i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=2)
    out = cols.reshape(h * w, 9 * c) @ k.reshape(9 * c, -1)
    return np.maximum(out.reshape(h, w, -1) + b, 0.0)


def _avg_pool(x: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    assert h % 2 == 0 and w % 2 == 0, "reference pooling handles even sizes only"
    return x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))


def activations(net: dict, rgb: np.ndarray) -> dict[str, np.ndarray]:
    x = rgb.astype(np.float64) - MEAN
    out = {}
    for name in ORDER:
        if name.endswith("_1") and name != "conv1_1":
            x = _avg_pool(x)
        k, b = net[name]
        x = _conv_relu(x, k.astype(np.float64), b.astype(np.float64))
        out[name] = x
    return out


def origin_loss(net: dict, generated: np.ndarray, content: np.ndarray, style: np.ndarray) -> float:
    """J = 10·J_content(conv4_2) + 40·Σ 0.2·J_style(conv1_1..conv5_1), all at one size."""
    g, c, s = activations(net, generated), activations(net, content), activations(net, style)
    h, w, ch = g["conv4_2"].shape
    j_content = np.sum((c["conv4_2"] - g["conv4_2"]) ** 2) / (4 * h * w * ch)
    j_style = 0.0
    for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"):
        h, w, ch = g[name].shape
        fg, fs = g[name].reshape(-1, ch), s[name].reshape(-1, ch)
        j_style += 0.2 * np.sum((fs.T @ fs - fg.T @ fg) ** 2) / (4 * ch * ch * (h * w) ** 2)
    return float(10 * j_content + 40 * j_style)


def load_rgb(path, size: tuple[int, int] | None = None) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.LANCZOS)
    return np.asarray(im, dtype=np.float64)

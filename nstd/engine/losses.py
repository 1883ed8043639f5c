"""The objective's terms as small units, and the scales that normalise them.

The compiled steps (:mod:`nstd.engine.steps`) add these up with per-term weights; the
``*_scale`` functions turn a raw term into one that reads 1 (or a known value) at the
content image, so a setting means the same on every pair and size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from nstd.engine.backend import tf

Margin = tuple[int, int, int, int]  # (top, bottom, left, right) pixels of context around a tile
NO_MARGIN: Margin = (0, 0, 0, 0)
LAPLACIAN_POOL = 4  # Li et al. 2017: the Laplacian of the 4×-pooled image (edges, not brush marks)


def content_terms(feats: dict, layers: tuple[str, ...], targets: list, weights: Any) -> list:
    """Per layer l, w_l · Σ(F−P)²/(4·N·C): the origin's content loss, weighted."""
    return [weights[i] * tf.reduce_sum(tf.square(feats[n] - targets[i])) / (4.0 * tf.cast(tf.size(feats[n]), tf.float32))
            for i, n in enumerate(layers)]


def tv_term(x: Any) -> Any:
    """Σ(dx² + dy²) over all pixels, divided by the element count (see :func:`total_variation`)."""
    dy = x[:, 1:, :, :] - x[:, :-1, :, :]
    dx = x[:, :, 1:, :] - x[:, :, :-1, :]
    return (tf.reduce_sum(tf.square(dy)) + tf.reduce_sum(tf.square(dx))) / tf.cast(tf.size(x), tf.float32)


def laplacian(x: Any, margin: Margin = NO_MARGIN) -> Any:
    """The Laplacian of the image's luminance after 4×4 average pooling (Li et al. 2017).

    It reads the picture's edges and shapes at a scale brush marks do not reach, so keeping
    it close to the content's holds outlines (houses, faces) that conv4_2 alone lets the
    style dissolve. ``margin``: a tile's frame of context, left out after pooling.
    """
    pooled = tf.nn.avg_pool2d(tf.reduce_mean(x, -1, keepdims=True), LAPLACIAN_POOL, LAPLACIAN_POOL, "SAME")
    pooled = crop(pooled, margin, LAPLACIAN_POOL)
    kernel = tf.constant([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])[:, :, None, None]
    return tf.nn.conv2d(pooled, kernel, 1, "VALID")


def laplacian_term(x: Any, target: Any, margin: Margin = NO_MARGIN) -> Any:
    """mean((Lap(x) − Lap(c))²), the content's Laplacian given as ``target``."""
    return tf.reduce_mean(tf.square(laplacian(x, margin) - target))


def blur(x: Any, sigma: float) -> Any:
    """``x`` [n, h, w, 3] blurred by a Gaussian of ``sigma`` pixels, separably, zeros past the
    edge (a detail pass blurs its picture and its target alike, so the edges agree)."""
    r = max(1, math.ceil(2.5 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
    k = np.tile((k / k.sum()).astype(np.float32)[:, None, None], (1, 3, 1))  # (taps, channels, 1)
    x = tf.nn.depthwise_conv2d(x, tf.constant(k[None]), [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(x, tf.constant(k[:, None]), [1, 1, 1, 1], "SAME")


def hold_term(x: Any, target: Any, sigma: float, margin: Margin = NO_MARGIN) -> Any:
    """mean((blur(x) − target)²) inside the frame: a detail pass keeps what is coarser than
    ``sigma`` where the pass before put it. ``target``: the held picture's :func:`blur`, cropped."""
    return tf.reduce_mean(tf.square(crop(blur(x, sigma), margin) - target))


def hold_scale(c_rgb: np.ndarray) -> float:
    """Turns :func:`hold_term` into an error relative to the held picture's variance."""
    return 1.0 / max(float(np.var(np.asarray(c_rgb, np.float64))), 1e-6)


def content_scale(trace: float, channels: int) -> float:
    """Turns the step's Σ(F−P)²/(4NC) into mean((F−P)²)/mean(P²); mean(P²) = trace(G_c)/C."""
    return 4.0 * channels / max(trace, 1e-12)


def style_scale(own: np.ndarray, target: np.ndarray) -> float:
    """Turns the step's ‖G−A‖²/(4C²) into ‖G−A‖²/‖G_c−A‖²: 1 at the content image."""
    dist = float(np.sum(np.square(own.astype(np.float64) - target)))
    floor = 1e-6 * float(np.sum(np.square(target.astype(np.float64)))) + 1e-12
    return 4.0 * own.shape[0] ** 2 / max(dist, floor)


def tv_scale(c_rgb: np.ndarray) -> float:
    """TV relative to the content's own."""
    return 1.0 / max(total_variation(c_rgb), 1e-6)


def laplacian_scale(c_rgb: np.ndarray) -> float:
    """The Laplacian term relative to the content's own Laplacian energy, mean(Lap(c)²)."""
    lap = laplacian(tf.constant(np.asarray(c_rgb, np.float32)[None]))
    return 1.0 / max(float(tf.reduce_mean(tf.square(lap))), 1e-6)


def total_variation(rgb: np.ndarray) -> float:
    """Mean squared difference of neighbouring pixels (the step's TV, unweighted)."""
    x = np.asarray(rgb, np.float64)
    return float((np.sum(np.diff(x, axis=0) ** 2) + np.sum(np.diff(x, axis=1) ** 2)) / x.size)


def layer_stride(layer: str) -> int:
    """Input pixels per feature position of a VGG layer (2 per pooling before it)."""
    return 2 ** (int(layer[4]) - 1)


def crop(t: Any, margin: Margin, stride: int = 1) -> Any:
    """Drop a frame of (top, bottom, left, right) input pixels from an NHWC tensor or array.

    On a map ``stride`` input pixels per position (features, pooled images) the frame shrinks with it.
    """
    if not any(margin):
        return t
    top, bottom, left, right = (k // stride for k in margin)
    return t[:, top:t.shape[1] - bottom, left:t.shape[2] - right, :]

"""Style targets: Gram matrices of style images, cached across jobs, and feature statistics.

A style image's Grams are keyed by its content hash and size, so a second job with the
same style computes none. A large image is measured in tiles, each core read with a margin
of context (:func:`nstd.engine.memory.gram_side` says which).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np

from nstd.engine import memory, plan
from nstd.engine.backend import tf
from nstd.engine.losses import crop, layer_stride
from nstd.engine.vgg import VGG19, gram
from nstd.images import LoadedImage, resize


class StyleTargets:
    """Features and Gram matrices on one network; ``available()`` gives the bytes a forward
    pass may use now."""

    def __init__(self, vgg: VGG19, available: Callable[[], int], cache_size: int = 64) -> None:
        self.vgg, self.available, self.cache_size = vgg, available, cache_size
        self._grams: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()

    def features(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str) -> dict[str, np.ndarray]:
        out = self.vgg.features(tf.constant(rgb[None], tf.float32), layers, pooling)
        return {k: v.numpy() for k, v in out.items()}

    def style_grams(self, style: LoadedImage, width: int, height: int, layers: tuple[str, ...],
                    pooling: str) -> list[np.ndarray]:
        """Gram targets of one style image at one size, cached across jobs by content hash."""
        key = (style.sha256, width, height, layers, pooling)
        if key in self._grams:
            self._grams.move_to_end(key)
            return self._grams[key]
        grams = self.grams_of(resize(style.rgb, width, height), layers, pooling)
        self._grams[key] = grams
        while len(self._grams) > self.cache_size:
            self._grams.popitem(last=False)
        return grams

    def grams_of(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str) -> list[np.ndarray]:
        """Gram matrices of one image, whole or in tiles (:func:`memory.gram_side`)."""
        h, w = rgb.shape[:2]
        side = memory.gram_side(w, h, self.available())
        if side is not None:
            return self.tiled_grams(rgb, layers, pooling, side)
        feats = self.vgg.features(tf.constant(rgb[None], tf.float32), layers, pooling)
        return [gram(feats[n]).numpy() for n in layers]

    def tiled_grams(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str, side: int,
                    margin: int = memory.GRAM_TILE_MARGIN) -> list[np.ndarray]:
        """Σ FᵀF over non-overlapping cores of ``side``, each read with a margin of context,
        over the count."""
        h, w = rgb.shape[:2]
        sums: list[np.ndarray] = []
        counts: list[int] = []
        for y0 in range(0, h, side):
            for x0 in range(0, w, side):
                y1, x1 = min(y0 + side, h), min(x0 + side, w)
                py0, px0, py1, px1 = max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
                frame = (y0 - py0, py1 - y1, x0 - px0, px1 - x1)
                for i, (g, n) in enumerate(self.region_sums(rgb[py0:py1, px0:px1], frame, layers, pooling)):
                    if i == len(sums):
                        sums.append(g)
                        counts.append(n)
                    else:
                        sums[i] += g
                        counts[i] += n
        return [(s / n).astype(np.float32) for s, n in zip(sums, counts)]

    def region_sums(self, x: np.ndarray, frame: tuple[int, int, int, int], layers: tuple[str, ...],
                    pooling: str, edge: int = 0) -> list[tuple[np.ndarray, int]]:
        """(ΣFᵀF, positions) per layer over ``x`` minus ``frame`` (features in full context;
        ``edge``: see :meth:`VGG19.features`)."""
        feats = self.vgg.features(tf.constant(np.asarray(x, np.float32)[None]), layers, pooling, edge=edge)
        out = []
        for n in layers:  # FᵀF in TensorFlow: no float64 copy of a full-resolution layer (512 B a pixel at conv1_1)
            f = crop(feats[n], frame, layer_stride(n))[0]
            f = tf.reshape(f, (-1, f.shape[-1]))
            out.append((tf.matmul(f, f, transpose_a=True).numpy().astype(np.float64), int(f.shape[0])))
        return out

    def blend(self, styles: list[tuple[LoadedImage, float]], width: int, height: int, params) -> list[np.ndarray]:
        """One Gram target per style layer for content of this size, styles mixed by weight.

        Averaging Grams is exact: Σ wᵢ‖G − Gᵢ‖² differs from ‖G − Σ wᵢGᵢ‖² (Σ wᵢ = 1) only
        by a constant, so the gradients are the same.
        """
        s_layers = tuple(n for n, _ in params.style_layers)
        total_weight = sum(wt for _, wt in styles)
        grams: list[np.ndarray] = []
        for i, (img, weight) in enumerate(styles):
            g = self.style_grams(img, *plan.style_size(*img.size, width, height, params.style_scale), s_layers,
                                 params.pooling)
            scaled = [gi * (weight / total_weight) for gi in g]
            grams = scaled if i == 0 else [a + b for a, b in zip(grams, scaled)]
        return grams

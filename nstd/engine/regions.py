"""Spatial control (Gatys et al. 2017): each region of the content gets its own style, or none.

A region is a mask over the content (0–1, any size, resized here) and the styles for it.
The style loss of a region compares its *masked* Gram matrix FᵀMF/ΣM, at each style
layer's resolution, with its styles' Gram matrix; a region without styles keeps the content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from nstd.errors import ImageError
from nstd.images import LoadedImage


@dataclass
class Region:
    mask: np.ndarray  # (h, w) floats in 0–1, at any size
    styles: list[tuple[LoadedImage, float]] = field(default_factory=list)  # empty: keep the content here
    name: str = ""  # for messages: the mask's file name


def mask_from_image(image: LoadedImage) -> np.ndarray:
    """A mask from any image, in 0–1: its transparency where it has some (a cut-out), else its
    luminance (white = the region)."""
    if image.alpha is not None and float(image.alpha.min()) < 250:
        return np.clip(image.alpha / 255.0, 0, 1).astype(np.float32)
    rgb = image.rgb
    return np.clip((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0, 0, 1).astype(np.float32)


def check_regions(regions: list[Region]) -> None:
    """Refuse masks that cannot mean anything: none, or one that covers nothing."""
    if not regions:
        raise ImageError("regions: give at least one {mask, style} entry.")
    for r in regions:
        if r.mask.ndim != 2 or r.mask.size == 0:
            raise ImageError(f"{r.name or 'a mask'}: a mask must be a 2-D image.")
        if float(r.mask.max()) <= 0.01:
            raise ImageError(f"{r.name or 'a mask'}: the mask is empty (all black); paint the region white.")
    if all(not r.styles for r in regions):
        raise ImageError("regions: at least one region needs a style.")


def resized(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaged resize (a feature position sees the share of its pixels in the region)."""
    if mask.shape == (height, width):
        return mask.astype(np.float32)
    return np.asarray(Image.fromarray(mask.astype(np.float32), "F").resize((width, height), Image.BOX),
                      np.float32).clip(0, 1)


def layer_masks(regions: list[Region], shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Per style layer, the regions' masks at that layer's (h, w), flattened: (regions, positions)."""
    return [np.stack([resized(r.mask, w, h).reshape(-1) for r in regions]) for h, w in shapes]


def masked_gram(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FᵀMF/ΣM of (1, h, w, C) features with a flattened mask."""
    f = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return ((f * mask[:, None]).T @ f / max(float(mask.sum()), 1e-6)).astype(np.float32)


def load_regions(specs: list, load) -> list[Region] | None:
    """Regions from ``[(mask path, [(style path, weight)…])…]``; ``load(path) -> LoadedImage``."""
    if not specs:
        return None
    regions = [Region(mask_from_image(load(mask)), [(load(p), w) for p, w in styles], mask.name)
               for mask, styles in specs]
    check_regions(regions)
    return regions


def describe(regions: list[Region] | None) -> dict:
    """The report's view of the regions (empty when the job has none)."""
    if not regions:
        return {}
    return {"regions": [{"mask": r.name, "coverage": round(float(r.mask.mean()), 4),
                         "styles": [{"path": s.path, "sha256": s.sha256, "weight": w} for s, w in r.styles]}
                        for r in regions]}

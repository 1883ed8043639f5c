"""Picture-quality measures that are not the loss being optimised.

Two numbers per result, both relative to the pair so they compare across pairs:

* **content preservation**: SSIM of luminance structure against the content, after a
  blur that ignores brushwork (σ = longest side / 128). 1 is the content itself.
* **style match**: how much closer to the style the result is than the content was, on
  a colour-distribution distance (sliced Wasserstein over RGB) and a Gram distance on
  VGG layers the objective does not use. 0 is no closer than the content, 1 is the style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

#: VGG-19 layers no objective in nstd uses (style uses convN_1, content conv4_2).
PROBE_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3")


def luminance(rgb: np.ndarray) -> np.ndarray:
    x = np.asarray(rgb, np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, peak: float = 255.0) -> float:
    """Mean structural similarity of two grey images (Wang et al. 2004, Gaussian window)."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = gaussian_filter(a, sigma), gaussian_filter(b, sigma)
    var_a = gaussian_filter(a * a, sigma) - mu_a**2
    var_b = gaussian_filter(b * b, sigma) - mu_b**2
    cov = gaussian_filter(a * b, sigma) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def content_preservation(image: np.ndarray, content: np.ndarray) -> float:
    """SSIM of blurred luminance; ``content`` already at ``image``'s size."""
    sigma = max(image.shape[:2]) / 128
    return ssim(gaussian_filter(luminance(image), sigma), gaussian_filter(luminance(content), sigma),
                sigma=max(1.5, 2 * sigma))


def colour_distance(a: np.ndarray, b: np.ndarray, projections: int = 64, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two images' RGB pixel distributions (0–255)."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(projections, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    qs = np.linspace(0.005, 0.995, 200)
    pa = np.quantile(np.asarray(a, np.float64).reshape(-1, 3) @ dirs.T, qs, axis=0)
    pb = np.quantile(np.asarray(b, np.float64).reshape(-1, 3) @ dirs.T, qs, axis=0)
    return float(np.mean(np.abs(pa - pb)))


def gram_distance(feats_a: dict[str, np.ndarray], grams_b: dict[str, np.ndarray]) -> float:
    """Mean over layers of ‖G_a − G_b‖ / ‖G_b‖."""
    out = []
    for name, gb in grams_b.items():
        f = feats_a[name].reshape(-1, feats_a[name].shape[-1]).astype(np.float64)
        ga = f.T @ f / f.shape[0]
        out.append(np.linalg.norm(ga - gb) / max(np.linalg.norm(gb), 1e-12))
    return float(np.mean(out))


@dataclass(frozen=True)
class Scores:
    content: float  # content preservation, 1 = the content
    style: float  # style match, 0 = no closer than the content, 1 = the style

    def as_dict(self) -> dict[str, float]:
        return {"content": round(self.content, 4), "style": round(self.style, 4)}


class Judge:
    """Scores results of one (content, style) pair at one size; the style's numbers are computed once."""

    def __init__(self, engine, content_rgb: np.ndarray, style_rgb: np.ndarray) -> None:
        self.engine, self.content, self.style = engine, content_rgb, style_rgb
        feats = engine.features(np.asarray(style_rgb, np.float32), PROBE_LAYERS, "avg")
        self.style_grams = {}
        for n in PROBE_LAYERS:
            f = feats[n].reshape(-1, feats[n].shape[-1]).astype(np.float64)
            self.style_grams[n] = f.T @ f / f.shape[0]
        self.base_colour = max(colour_distance(content_rgb, style_rgb), 1e-6)
        self.base_gram = max(self._gram(content_rgb), 1e-6)

    def _gram(self, image: np.ndarray) -> float:
        return gram_distance(self.engine.features(np.asarray(image, np.float32), PROBE_LAYERS, "avg"),
                             self.style_grams)

    def __call__(self, image: np.ndarray) -> Scores:
        colour = colour_distance(image, self.style) / self.base_colour
        texture = self._gram(image) / self.base_gram
        return Scores(content_preservation(image, self.content), 1.0 - 0.5 * (colour + texture))


def line_energy(image: np.ndarray, rows: list[int], columns: list[int], reach: int = 2) -> float:
    """Mean |difference| between neighbouring pixels across the given lines, and ``reach``
    boundaries either side (a seam may sit a pixel off). A tile border is at ``rows`` and
    ``columns``; compare a tiled result with the untiled one on the same lines."""
    x = np.asarray(image, np.float64)
    dx = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))  # dx[i]: between columns i and i+1
    dy = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2))
    near = [dx[i] for c in columns for i in range(c - 1 - reach, c + reach) if 0 <= i < dx.size]
    near += [dy[i] for r in rows for i in range(r - 1 - reach, r + reach) if 0 <= i < dy.size]
    return float(np.mean(near))


def fine_energy(image: np.ndarray) -> float:
    """Mean square of the finest octave of the luminance (what a blur of σ 1 px removes):
    pixel noise and brush texture both live there."""
    lum = luminance(image)
    return float(np.mean((lum - gaussian_filter(lum, 1.0)) ** 2))


def fine_ratio(image: np.ndarray, content: np.ndarray) -> float:
    """The finest octave's energy over the content's at the same size: 1 is as detailed as the
    photo; a much larger number at a large size than at 512 px is noise, not strokes."""
    return fine_energy(image) / max(fine_energy(content), 1e-12)

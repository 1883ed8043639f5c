"""The temporal loss (Ruder et al. 2016, eq. 5): hold a frame to the previous stylized frame
warped onto it, where the flow is reliable.

    E_t(x) = temporal_weight · Σ c(p) ‖x(p) − ω(p)‖² / (3 · Σ c(p) · σ²)

ω is the previous stylized frame warped by the flow, c the reliability mask
(:func:`nstd.video.flow.reliability`), σ² the content frame's own pixel variance. Divided
so, the term reads like the normalised objective's others: a frame that strays from ω by
one standard deviation of the photo, everywhere the flow is trusted, costs
``temporal_weight``; it does not change with the size, the clip's contrast or how much of
the frame is reliable, and ``strength`` keeps setting content against style as for stills.

It lives on pixels, not on VGG features, so it is added outside the compiled step: the
engine calls :meth:`Temporal.wrap` on the loss-and-gradient function of a frame's scale,
and the step, the Gram cache and the compiled graph are the same as for a still.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Temporal:
    """A temporal target for one frame: ``target`` (h, w, 3, 0–255), ``mask`` (h, w, 0–1)."""

    target: np.ndarray
    mask: np.ndarray
    weight: float

    def applies(self, c_rgb: np.ndarray) -> bool:
        """Only at the frame's own size (a later frame runs at full size only)."""
        return self.weight > 0 and c_rgb.shape[:2] == self.target.shape[:2]

    def wrap(self, fg: Callable[[np.ndarray], tuple], c_rgb: np.ndarray) -> Callable[[np.ndarray], tuple]:
        """``fg`` plus the temporal term: (loss, gradient, parts), parts gaining ``temporal``."""
        target = np.asarray(self.target, np.float64)
        mask = np.asarray(self.mask, np.float64)[..., None]
        spread = float(np.var(np.asarray(c_rgb, np.float64).reshape(-1, 3), axis=0).mean())
        k = self.weight / (3.0 * max(float(mask.sum()), 1.0) * max(spread, 1.0))

        def fg_t(x: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
            loss, grad, parts = fg(x)
            d = np.asarray(x, np.float64) - target
            term = k * float(np.sum(mask * d * d))
            return loss + term, grad + 2.0 * k * mask * d, {**parts, "loss": parts["loss"] + term, "temporal": term}

        fg_t.precision = getattr(fg, "precision", None)  # type: ignore[attr-defined]
        return fg_t


def term(image: np.ndarray, temporal: Temporal, c_rgb: np.ndarray) -> float:
    """The temporal term of ``image`` alone (for reports and tests)."""
    return temporal.wrap(lambda x: (0.0, np.zeros_like(x), {"loss": 0.0}), c_rgb)(np.asarray(image, np.float64))[0]


__all__ = ["Temporal", "term"]

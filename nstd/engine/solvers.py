"""Adam and bounded L-BFGS over the image, with their whole state exposed.

Written out (a screen each) rather than borrowed so that a checkpoint holds the
optimizer's full state and a resumed job continues exactly where it stopped.
``fg(x)`` returns ``(loss, gradient, parts)`` for an image ``x`` (0–255 RGB).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

FG = Callable[[np.ndarray], tuple[float, np.ndarray, dict[str, float]]]
LO, HI = 0.0, 255.0


class Solver:
    """Common shape: ``step()`` does one iteration and returns the loss it evaluated."""

    def __init__(self, x0: np.ndarray, fg: FG, clip: bool) -> None:
        self.x = np.asarray(x0, np.float64).copy()
        self.fg, self.clip = fg, clip
        self.evaluations = 0
        self.converged = False
        self.first: dict[str, float] | None = None  # loss parts at the starting image

    def _eval(self, x: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        self.evaluations += 1
        f, g, parts = self.fg(x)
        if self.first is None:
            self.first = dict(parts)
        return float(f), np.asarray(g, np.float64), parts

    def _project(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, LO, HI) if self.clip else x

    def state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "fg"}

    def load_state(self, state: dict[str, Any]) -> None:
        vars(self).update({k: v for k, v in state.items() if k != "fg"})


class Adam(Solver):
    """Adam as in TF1's AdamOptimizer (the origin's): bias-corrected step size, ε outside the root."""

    def __init__(self, x0, fg, clip, lr: float, beta1: float, beta2: float, epsilon: float) -> None:
        super().__init__(x0, fg, clip)
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.m = np.zeros_like(self.x)
        self.v = np.zeros_like(self.x)
        self.t = 0

    def step(self) -> tuple[float, dict[str, float], np.ndarray]:
        """Evaluate at the current image, then move. Returns (loss, parts, image evaluated)."""
        x = self.x
        f, g, parts = self._eval(x)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        lr_t = self.lr * np.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        self.x = self._project(x - lr_t * self.m / (np.sqrt(self.v) + self.epsilon))
        return f, parts, x


class LBFGS(Solver):
    """Limited-memory BFGS, projected onto [0, 255] when ``clip``, with backtracking.

    Each iteration ends at a point whose loss is known, so the best image is exact.
    """

    def __init__(self, x0, fg, clip, memory: int) -> None:
        super().__init__(x0, fg, clip)
        self.memory = memory
        self.s: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.f: float | None = None
        self.g: np.ndarray | None = None
        self.parts: dict[str, float] = {}

    def _free(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Mask of variables that may move along ``d`` (not pinned at a bound)."""
        if not self.clip:
            return np.ones(x.shape, bool)
        return ~(((x <= LO) & (d < 0)) | ((x >= HI) & (d > 0)))

    def _direction(self, g: np.ndarray) -> np.ndarray:
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(self.s), reversed(self.y)):
            rho = 1.0 / np.vdot(y, s)
            a = rho * np.vdot(s, q)
            q -= a * y
            alphas.append((rho, a))
        if self.s:
            q *= np.vdot(self.s[-1], self.y[-1]) / np.vdot(self.y[-1], self.y[-1])
        else:  # first step: move the largest pixel by at most a few grey levels
            q *= 4.0 / max(np.abs(q).max(), 1e-30)
        for (s, y), (rho, a) in zip(zip(self.s, self.y), reversed(alphas)):
            q += s * (a - rho * np.vdot(y, q))
        return -q

    def step(self) -> tuple[float, dict[str, float], np.ndarray]:
        if self.f is None:
            self.f, self.g, self.parts = self._eval(self.x)
        x, f, g = self.x, self.f, self.g
        d = self._direction(g)
        d *= self._free(x, d)
        slope = np.vdot(g, d)
        if slope >= 0:  # not a descent direction: forget the curvature history
            self.s, self.y = [], []
            d = self._direction(g)
            d *= self._free(x, d)
            slope = np.vdot(g, d)
        t = 1.0
        for _ in range(12):
            x_new = self._project(x + t * d)
            f_new, g_new, parts = self._eval(x_new)
            if f_new <= f + 1e-4 * np.vdot(g, x_new - x):
                break
            # quadratic interpolation of the step length, kept within [0.1, 0.5]·t
            denom = 2.0 * (f_new - f - slope * t)
            t = float(np.clip(-slope * t * t / denom if denom > 0 else 0.5 * t, 0.1 * t, 0.5 * t))
        else:
            self.converged = True  # no decrease possible: stay at the best point
            return f, self.parts, x
        s, y = x_new - x, g_new - g
        if np.vdot(s, y) > 1e-10 * np.vdot(y, y):
            self.s.append(s)
            self.y.append(y)
            if len(self.s) > self.memory:
                self.s.pop(0)
                self.y.pop(0)
        self.x, self.f, self.g, self.parts = x_new, f_new, g_new, parts
        return f_new, parts, x_new


def make_solver(x0: np.ndarray, fg: FG, params: Any) -> Solver:
    if params.optimizer == "adam":
        return Adam(x0, fg, params.clip, params.learning_rate, params.beta1, params.beta2, params.epsilon)
    return LBFGS(x0, fg, params.clip, params.lbfgs_memory)

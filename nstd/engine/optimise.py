"""One scale's optimisation: of the whole image, or tile by tile in two sweeps.

Tiles are refined row-major in two sweeps that share the iterations. A tile's Gram target
is its own Gram plus what the whole image lacks, G_tile + (G* − Ḡ) (:func:`tiling.nudged`),
with the whole image's loss weights: every tile takes an equal part of the correction and
keeps the coarser scale's layout of the style. First sweep: Ḡ is measured when the sweep
begins and held, so the first tiles take no more than the last. Second sweep: Ḡ follows
every tile's moves (a :class:`tiling.StyleLedger`), so the sweep ends with the whole image
on target. Both rules replaced worse ones, measured at 512 px on real weights: matching
the style's own Grams made every tile a whole painting in small (loss 1.14× the untiled
image's, swirls the untiled sky lacks); block-coordinate descent, where a tile's target is
what the whole image lacks given every other region, let the first tiles take all of it (a
smooth top-left corner; a lighter block at 1024 px).

The second sweep's tiles are shifted half a tile (``tiling.windows(shifted=True)``): where
the first sweep's tiles met, each pixel ends as a blend of two tiles' textures, fainter
than either; the second sweep repaints those bands from inside. A frame of real neighbours
gives a tile's features their true context, and its moves fade out across the borders it
shares (:class:`tiling.Window`), so no pixel line is left to serve features on both sides
(1-px seams).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from nstd.engine import plan, tiling
from nstd.engine.checkpoint import Checkpoint, TileState
from nstd.engine.loop import Best, Run
from nstd.engine.objective import LossWeights, Objectives, layer_names
from nstd.engine.solvers import Solver

SolverFactory = Callable[[np.ndarray, Callable, Any], Solver]  # (x0, fg, params) -> solver (solvers.make_solver)


class Optimiser:
    """Runs one scale of a job: objectives from ``objectives``, solvers from ``solvers``,
    iterations through ``run``. ``temporal``: a clip frame's pull towards the previous
    frame (``applies(c_rgb)``, ``wrap(fg, c_rgb)``; :class:`nstd.video.temporal.Temporal`),
    added to the loss of each whole-image scale it applies to."""

    def __init__(self, objectives: Objectives, solvers: SolverFactory, run: Run, temporal: Any = None) -> None:
        self.objectives, self.solvers, self.run, self.temporal = objectives, solvers, run, temporal

    def whole(self, si: int, c_rgb: np.ndarray, grams: list[np.ndarray], x0: np.ndarray,
              restored: Checkpoint | None, masks: list[np.ndarray] | None = None,
              weights: LossWeights | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """(image, loss parts) of scale ``si`` optimised whole."""
        run, params, hold = self.run, self.run.params_for(si), self.run.scales[si].hold
        if weights is None:
            weights = self.objectives.weights(c_rgb, grams, params, hold)
        objective = self.objectives.build(c_rgb, grams, params, weights, masks=masks, hold=hold)
        run.use(objective.precision)
        fg: Callable = objective
        if self.temporal is not None and self.temporal.applies(c_rgb):  # a clip's later frame
            fg = self.temporal.wrap(objective, c_rgb)
        solver = self.solvers(x0, fg, params)
        best, start = run.begin(solver, x0, restored)
        best = run.loop(si, solver, best, start, run.scales[si].iterations, run.budget(si))
        return best.x, best.parts

    def tiled(self, si: int, c_rgb: np.ndarray, grams: list[np.ndarray], x0: np.ndarray, side: int,
              restored: Checkpoint | None) -> tuple[np.ndarray, dict[str, float]]:
        """(image, mean loss parts of the last sweep's tiles) of scale ``si`` refined in tiles
        of ``side`` (see the module's text)."""
        return TiledScale(self, si, c_rgb, grams, side).refine(x0, restored)


class TiledScale:
    """One scale refined tile by tile: the two sweeps' windows and the whole image's statistics."""

    def __init__(self, optimiser: Optimiser, si: int, c_rgb: np.ndarray, grams: list[np.ndarray], side: int) -> None:
        self.opt, self.run, self.si = optimiser, optimiser.run, si
        self.c_rgb, self.grams, self.side = c_rgb, grams, side
        h, w = c_rgb.shape[:2]
        self.sweeps = [tiling.windows(w, h, side), tiling.windows(w, h, side, shifted=True)]
        self.first_sweep = len(self.sweeps[0])  # visits in the first sweep
        self.visits = self.first_sweep + len(self.sweeps[1])
        self.per_visit = max(1, self.run.scales[si].iterations // len(self.sweeps))
        self.params, self.hold = self.run.params_for(si), self.run.scales[si].hold
        self.weights = optimiser.objectives.weights(c_rgb, grams, self.params, self.hold)

    def measure(self, x: np.ndarray, frame: tiling.Frame) -> list[tuple[np.ndarray, int]]:
        params = self.params
        return self.opt.objectives.targets.region_sums(x, frame, layer_names(params)[1], params.pooling,
                                                       plan.vgg_edge(self.hold))

    def refine(self, x0: np.ndarray, restored: Checkpoint | None) -> tuple[np.ndarray, dict[str, float]]:
        was = restored.tiled if restored is not None else None
        x_full = np.asarray(was.image if was is not None else x0, np.float64).copy()
        first = was.tile if was is not None else 0
        ledger = None
        if was is not None:  # exactly as it was, for a bit-identical resume
            ledger = tiling.StyleLedger(self.measure, [a.copy() for a in was.sums], list(was.counts))
        budget_left = self.run.budget(self.si)
        t_scale = time.monotonic()
        finals: dict[int, dict[str, float]] = {}  # the last sweep's tiles' parts, by visit
        for g in range(first, self.visits):
            second = g >= self.first_sweep
            # a sweep begins: measure the whole image (a resume at that very tile brought its sums)
            if ledger is None or (g == self.first_sweep and g != first):
                ledger = tiling.StyleLedger.of(self.measure, x_full, self.sweeps[second])
            share = (budget_left, t_scale)
            best = self.visit(g, x_full, ledger, share, restored if g == first else None)
            if g == self.first_sweep:
                finals.clear()
            finals[g] = best.parts
        final = {k: float(np.mean([f[k] for f in finals.values() if k in f]))
                 for k in ("loss", "content", "style", "tv")}
        return x_full, {**final, "tiles": self.first_sweep}

    def visit(self, g: int, x_full: np.ndarray, ledger: tiling.StyleLedger, share: tuple[float | None, float],
              restored: Checkpoint | None) -> Best:
        """Refine visit ``g``'s tile in ``x_full`` (in place); ``share``: the scale's time
        budget and when the scale began."""
        run, params = self.run, self.params
        second = g >= self.first_sweep
        tile = self.sweeps[1][g - self.first_sweep] if second else self.sweeps[0][g]
        base = x_full[tile.region].copy()
        held = self.measure(base, tile.seen)
        tile_fg = self.opt.objectives.build(self.c_rgb[tile.region], tiling.nudged(held, ledger.deficit(self.grams)),
                                            params, self.weights, tile.seen, hold=self.hold)
        run.use(tile_fg.precision)
        solver = self.opt.solvers(base, tile.objective(tile_fg, base), params)
        best, start = run.begin(solver, base, restored)
        budget = plan.visit_budget(share[0], time.monotonic() - share[1], self.visits - g)
        at = TileState(g, self.side, x_full, ledger.sums, ledger.counts)
        best = run.loop(self.si, solver, best, start, self.per_visit, budget, at, self.visits)
        x_full[tile.region] = tile.moved(base, best.x)
        if second:
            ledger.update(held, x_full[tile.region], tile)
        return best

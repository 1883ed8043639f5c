"""One job: its scales coarse to fine, each whole or in tiles, then the picture's finish.

A scale whose optimisation would not fit in memory is refined in tiles; one that runs out
of memory anyway is retried with smaller tiles (:func:`plan.smaller_tile`), never left a
dead job.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nstd.engine import plan
from nstd.engine.backend import tf
from nstd.engine.checkpoint import Checkpoint
from nstd.engine.hooks import Hooks, Result
from nstd.engine.loop import Run
from nstd.engine.objective import LossWeights, Objectives
from nstd.engine.optimise import Optimiser, SolverFactory
from nstd.engine.plan import check_size
from nstd.engine.regions import Region
from nstd.images import LoadedImage, histogram_transfer, luminance_transfer, resize

OOM_ERRORS = (MemoryError, tf.errors.ResourceExhaustedError)


@dataclass
class Inputs:
    """What one job optimises: the pictures, the parameters, and where it resumes from."""

    content: LoadedImage
    styles: list[tuple[LoadedImage, float]]
    params: Any  # nstd.params.Params
    init_image: LoadedImage | None = None
    regions: list[Region] | None = None
    resume: Checkpoint | None = None
    temporal: Any = None  # a clip frame's temporal term (nstd.video.temporal.Temporal), or None


class Job:
    """Runs one :class:`Inputs` with the engine's objectives and solvers; ``available()``:
    the bytes a step may use now."""

    def __init__(self, objectives: Objectives, solvers: SolverFactory, available: Callable[[], int], inputs: Inputs,
                 hooks: Hooks) -> None:
        self.objectives, self.available, self.inputs = objectives, available, inputs
        params, state = inputs.params, inputs.resume
        self.seed = state.seed if state is not None else params.seed if params.seed is not None else \
            secrets.randbits(32)
        if inputs.regions:  # masks need the content at every scale
            params = dataclasses.replace(params, paint_size=None)
        self.scales = plan.scales(*check_size(inputs.content.size[0], inputs.content.size[1], params.size), params)
        self.run = Run(params, self.seed, self.scales, hooks, state, objectives.chooser.rate())
        self.optimiser = Optimiser(objectives, solvers, self.run, inputs.temporal)

    def result(self) -> Result:
        """Run every scale from the resumed one on, and finish the picture."""
        state = self.inputs.resume
        first = state.scale if state is not None else 0
        self.run.announce()
        x: np.ndarray | None = None
        final: dict[str, float] = {}
        for si in range(first, len(self.scales)):
            x, final = self.scale(si, x, state if si == first else None)
            if si < len(self.scales) - 1 and self.scales[si + 1].detail and self.run.hooks.preview is not None:
                self.run.hooks.preview(np.asarray(x, np.float32), self.run.iterations_done)  # a print's picture so far
            if si < len(self.scales) - 1 and self.run.out_of_time():  # keep the finest picture reached
                (w0, h0), (w, h) = self.scales[si].size, self.scales[-1].size
                self.run.notes.append(f"time limit reached after scale {si + 1}/{len(self.scales)} ({w0}x{h0}); "
                                      f"the picture was enlarged from there to {w}x{h}")
                x = resize(x.astype(np.float32), w, h)
                break
        return self.finish(x, final)

    def scale(self, si: int, x: np.ndarray | None, restored: Checkpoint | None) -> tuple[np.ndarray, dict[str, float]]:
        """Scale ``si`` from the previous scale's image ``x`` (or the start, or the checkpoint)."""
        inputs, run, scale = self.inputs, self.run, self.scales[si]
        params = run.params_for(si)
        w, h = scale.size
        if scale.detail:  # its content is the picture so far, which it holds and adds detail to
            run.base = restored.base if restored is not None else resize(x.astype(np.float32), w, h)
            c_rgb = run.base
        else:
            c_rgb = resize(inputs.content.rgb, w, h)
        t0 = time.monotonic()
        masks, weights = None, None
        if inputs.regions:
            grams, masks, weights = self.objectives.regions(inputs.regions, c_rgb, params)
        else:
            grams = self.objectives.targets.blend(inputs.styles, w, h, params)
        run.timings["targets"] += time.monotonic() - t0
        if restored is not None:
            x0 = restored.solver["x"]  # a tiled scale restores its whole image itself
        elif x is not None:
            x0 = resize(x.astype(np.float32), w, h)
        else:
            x0 = self.start_image(c_rgb)
        side = plan.tile_side(w, h, params, si == len(self.scales) - 1, self.available())
        if restored is not None and restored.tiled is not None:
            side = restored.tiled.side
        x, final, side = self.refine(si, c_rgb, grams, x0, side, restored, masks, weights)
        if side is not None:
            run.notes.append(f"scale {si + 1} ({w}x{h}) refined in {side}px tiles")
        return x, final

    def refine(self, si: int, c_rgb: np.ndarray, grams: list[np.ndarray], x0: np.ndarray, side: int | None,
               restored: Checkpoint | None, masks: list[np.ndarray] | None, weights: LossWeights | None
               ) -> tuple[np.ndarray, dict[str, float], int | None]:
        """(image, loss parts, tile side or None) of one scale, whole or in tiles of ``side``;
        after running out of memory, again in smaller tiles."""
        h, w = c_rgb.shape[:2]
        while True:
            try:
                if side is not None and self.inputs.regions:
                    raise MemoryError(f"{w}x{h} with masks would need tiles, which masks cannot use yet; "
                                      "ask for a smaller size or raise limits.memory / --memory")
                if side is None:
                    return (*self.optimiser.whole(si, c_rgb, grams, x0, restored, masks, weights), side)
                return (*self.optimiser.tiled(si, c_rgb, grams, x0, side, restored), side)
            except OOM_ERRORS as exc:  # a smaller plan, never a dead job
                smaller = plan.smaller_tile(w, h, side)
                if smaller is None:
                    raise
                self.run.notes.append(f"out of memory at {w}x{h} ({type(exc).__name__}); retried in "
                                      f"{smaller}px tiles")
                side, restored = smaller, None

    def start_image(self, c_rgb: np.ndarray) -> np.ndarray:
        """The first scale's starting image, as ``init`` says."""
        params, (h, w) = self.inputs.params, c_rgb.shape[:2]
        if params.init == "content":
            return c_rgb.copy()
        if params.init == "style":
            return resize(self.inputs.styles[0][0].rgb, w, h)
        if params.init == "noise":
            # The origin: a noisy blend in mean-subtracted space, noise uniform in ±20.
            rng = np.random.default_rng(self.seed)
            noise = rng.uniform(-20.0, 20.0, size=c_rgb.shape).astype(np.float32)
            mean = np.asarray((123.68, 116.779, 103.939), np.float32)
            return mean + (1 - params.noise_ratio) * (c_rgb - mean) + params.noise_ratio * noise
        if self.inputs.init_image is None:
            raise ValueError(f"init {params.init!r} needs init_image")
        return resize(self.inputs.init_image.rgb, w, h)

    def finish(self, x: np.ndarray, final: dict[str, float]) -> Result:
        """Clipped, colours preserved as asked, the content's transparency put back."""
        content, params, run = self.inputs.content, self.inputs.params, self.run
        size = self.scales[-1].size
        image = np.clip(x, 0, 255).astype(np.float32)
        if params.preserve_colors == "luminance":
            image = luminance_transfer(image, resize(content.rgb, *size))
        elif params.preserve_colors == "histogram":
            image = histogram_transfer(image, resize(content.rgb, *size))
        alpha = resize(content.alpha, *size) if content.alpha is not None else None
        run.timings["total"] = run.elapsed()
        return Result(image, alpha, self.seed, run.initial, final, run.history, run.iterations_done, run.evaluations,
                      run.stopped_by, {k: round(v, 3) for k, v in run.timings.items()}, [s.size for s in self.scales],
                      run.notes, run.precisions)

"""The resident style-transfer engine: one facade over the engine's roles.

One :class:`Engine` holds the VGG-19 weights on the device and, for every job it runs:

- compiled loss-and-gradient steps, one per shape and precision (:mod:`~nstd.engine.steps`);
- the precision each shape runs with, measured once (:class:`~nstd.engine.precision.Chooser`);
- style Gram matrices, cached across jobs by the style's content hash (:mod:`~nstd.engine.targets`);
- objectives with their loss weights normalised on the pair (:mod:`~nstd.engine.objective`);
- a job's plan (:mod:`~nstd.engine.plan`), its scales (:mod:`~nstd.engine.job`), their
  optimisation whole or in tiles (:mod:`~nstd.engine.optimise`) and the iteration loop with
  its hooks and checkpoints (:mod:`~nstd.engine.loop`, :mod:`~nstd.engine.checkpoint`).

Jobs reuse all of it; only targets are computed per job.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nstd.engine import memory, precision
from nstd.engine.backend import tf
from nstd.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nstd.engine.hooks import Hooks, Interrupted, Progress
from nstd.engine.job import Inputs, Job, Result
from nstd.engine.losses import NO_MARGIN, Margin
from nstd.engine.objective import LossWeights, Objective, Objectives, RegionTargets
from nstd.engine.optimise import SolverFactory
from nstd.engine.regions import Region
from nstd.engine.solvers import make_solver
from nstd.engine.steps import StepCompiler
from nstd.engine.targets import StyleTargets
from nstd.engine.vgg import VGG19
from nstd.engine.weights import VGGWeights
from nstd.images import LoadedImage, resize
from nstd.params import Params

# the names callers have always imported from here
__all__ = ["Checkpoint", "Engine", "Hooks", "Interrupted", "Progress", "Result", "device_name", "load_checkpoint",
           "save_checkpoint"]


def device_name() -> str:
    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


class Engine:
    """Resident optimizer: build once, call :meth:`stylize` for every job."""

    def __init__(self, weights: VGGWeights, *, compute: str = "auto", compiler: str = "auto",
                 gram_cache_size: int = 64, memory_limit: int | None = None,
                 choices: precision.ChoiceCache | None = None, measuring: precision.Measuring | None = None,
                 steps: Callable[[VGG19], StepCompiler] = StepCompiler, solvers: SolverFactory = make_solver) -> None:
        """``compute``: fp32 | bf16 | fp16 | auto, the convolutions' number format;
        ``compiler``: xla | graph | auto (see :mod:`nstd.engine.precision`); ``choices``:
        where ``auto`` remembers what it measured (default: the user's cache folder);
        ``measuring``: how it measures (:class:`precision.Measuring`).
        ``memory_limit``: bytes the process may use (default: the machine's memory).
        ``steps``: makes the step compiler from the network; ``solvers``: makes a solver from
        (x0, fg, params) (:func:`solvers.make_solver`). Tests and benches swap these."""
        self.chooser = precision.Chooser(compute, compiler, choices, measuring)  # checks the names first
        self.memory_limit = memory_limit
        self.weights = weights
        self.vgg = VGG19(weights)
        self.steps = steps(self.vgg)
        self.targets = StyleTargets(self.vgg, self.available, gram_cache_size)
        self.objectives = Objectives(self.targets, self.steps, self.chooser)
        self.solvers = solvers
        self.device = device_name()

    def available(self) -> int:
        """Bytes a step may add now, under ``memory_limit``."""
        return memory.budget(self.memory_limit)

    # --- the roles' own calls, for library users, tests and benches ---------------

    def features(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str) -> dict[str, np.ndarray]:
        return self.targets.features(rgb, layers, pooling)

    def style_grams(self, style: LoadedImage, width: int, height: int, layers: tuple[str, ...],
                    pooling: str) -> list[np.ndarray]:
        """Gram targets of one style image at one size, cached across jobs by content hash."""
        return self.targets.style_grams(style, width, height, layers, pooling)

    def grams_of(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str) -> list[np.ndarray]:
        return self.targets.grams_of(rgb, layers, pooling)

    def blend_grams(self, styles: list[tuple[LoadedImage, float]], width: int, height: int,
                    params: Params) -> list[np.ndarray]:
        """One Gram target per style layer for content of this size, styles mixed by weight."""
        return self.targets.blend(styles, width, height, params)

    def loss_weights(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Params) -> LossWeights:
        """The objective's weights, normalised on the whole content image (:mod:`objective`)."""
        return self.objectives.weights(c_rgb, grams, params)

    def region_targets(self, regions: list[Region], c_rgb: np.ndarray, params: Params) -> RegionTargets:
        return self.objectives.regions(regions, c_rgb, params)

    def objective(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Params, weights: LossWeights,
                  margin: Margin = NO_MARGIN, masks: list[np.ndarray] | None = None,
                  once: bool = False) -> Objective:
        """``fg(x) -> (loss, gradient, parts)`` at ``c_rgb``'s shape (:meth:`Objectives.build`)."""
        return self.objectives.build(c_rgb, grams, params, weights, margin, masks, once)

    def evaluate(self, image: np.ndarray, content: LoadedImage, styles: list[tuple[LoadedImage, float]],
                 params: Params) -> dict[str, float]:
        """The loss parts of ``image`` on ``params``' objective, at ``image``'s size."""
        h, w = image.shape[:2]
        c_rgb = resize(content.rgb, w, h)
        grams = self.blend_grams(styles, w, h, params)
        fg = self.objective(c_rgb, grams, params, self.loss_weights(c_rgb, grams, params), once=True)
        return fg(np.asarray(image, np.float64))[2]

    # --- one job -------------------------------------------------------------------

    def stylize(self, content: LoadedImage, styles: list[tuple[LoadedImage, float]], params: Params, *,
                init_image: LoadedImage | None = None, regions: list[Region] | None = None,
                resume: Checkpoint | None = None, temporal: Any = None, hooks: Hooks | None = None,
                **callbacks: Any) -> Result:
        """Run one job to completion (or time limit); see :class:`Result`.

        ``hooks``: progress, checkpoints, previews and stop requests (:class:`Hooks`); its
        fields may be given as keywords instead (``progress=…, checkpoint=…``). ``resume``:
        a :class:`Checkpoint` to continue from. ``temporal``: a clip frame's pull towards the
        previous frame (:class:`nstd.video.temporal.Temporal`), added to the loss of each
        whole-image scale it applies to. Scales run coarse to fine. A scale whose
        optimisation would not fit in memory (or runs out of it) is refined in overlapping
        tiles that share one style target.
        """
        if hooks is not None and callbacks:
            raise TypeError("give hooks= or its fields as keywords, not both")
        inputs = Inputs(content, styles, params, init_image, regions, Checkpoint.of(resume), temporal)
        return Job(self.objectives, self.solvers, self.available, inputs, hooks or Hooks(**callbacks)).result()

"""What a caller of :meth:`nstd.engine.Engine.stylize` hears and says while a job runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nstd.engine.checkpoint import Checkpoint


class Interrupted(Exception):
    """Raised when ``should_stop()`` says so; the last checkpoint was just written."""


@dataclass
class Progress:
    scale: int
    scales: int
    iteration: int
    iterations: int
    loss: float
    content: float
    style: float
    tv: float
    elapsed: float
    eta: float | None  # seconds left, from steady steps only; None until one was timed
    tile: int = 0  # 1-based tile number when the scale is tiled, else 0
    tiles: int = 0

    @property
    def eta_text(self) -> str:
        return "ETA ?" if self.eta is None else f"ETA {self.eta:.0f}s"


@dataclass
class Result:
    """What one job made: the picture, the seed, the losses, and how it went."""

    image: np.ndarray
    alpha: np.ndarray | None
    seed: int
    initial: dict[str, float]
    final: dict[str, float]
    history: list[dict[str, float]]
    iterations: int
    evaluations: int
    stopped_by: str
    timings: dict[str, float]
    shapes: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    precision: list[str] = field(default_factory=list)  # compute/compiler of the steps, in order


@dataclass
class Hooks:
    """The callbacks of one job, each optional.

    ``progress``: after every iteration. ``checkpoint``: every ``checkpoint_every``
    iterations and before stopping; a :class:`Checkpoint` to resume from. ``preview``: the
    image so far, every ``preview_every`` iterations (a parameter). ``should_stop``: asked
    before every iteration; when it says so, the job checkpoints and raises :class:`Interrupted`.
    """

    progress: Callable[[Progress], None] | None = None
    checkpoint: Callable[[Checkpoint], None] | None = None
    checkpoint_every: int = 0
    preview: Callable[[np.ndarray, int], None] | None = None
    should_stop: Callable[[], bool] | None = None

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
        return "ETA ?" if self.eta is None else f"ETA {duration(self.eta)}"


def duration(seconds: float) -> str:
    """A span of time as a person reads it: 42s, 12 min, 3 h 05 min."""
    if seconds < 100:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


@dataclass(frozen=True)
class Plan:
    """What a job will do, told before its first step: each scale's size and iterations,
    and the time that takes at the step rate this machine measured (None: not yet known)."""

    scales: list[tuple[int, int, int, bool]]  # (width, height, iterations, detail pass?)
    estimate: float | None

    def describe(self) -> str:
        parts = [f"{'detail ' if d else ''}{w}×{h} ({n} iterations)" for w, h, n, d in self.scales]
        about = f"; about {duration(self.estimate)} on this machine" if self.estimate is not None else ""
        return f"{len(self.scales)} scale(s): {', '.join(parts)}{about}"


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

    ``plan``: once, before the first step (:class:`Plan`). ``progress``: after every iteration. ``checkpoint``: every ``checkpoint_every``
    iterations and before stopping; a :class:`Checkpoint` to resume from. ``preview``: the
    image so far, every ``preview_every`` iterations (a parameter). ``should_stop``: asked
    before every iteration; when it says so, the job checkpoints and raises :class:`Interrupted`.
    """

    progress: Callable[[Progress], None] | None = None
    plan: Callable[[Plan], None] | None = None
    checkpoint: Callable[[Checkpoint], None] | None = None
    checkpoint_every: int = 0
    preview: Callable[[np.ndarray, int], None] | None = None
    should_stop: Callable[[], bool] | None = None

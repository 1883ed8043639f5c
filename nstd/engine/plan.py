"""The job's plan as pure functions, checked and computed before any TensorFlow call.

The picture's size: a size VGG-19 cannot take fails with a sentence that says what size
works, never with an op's internal text. The scales, coarse to fine; whether a scale runs
whole or in tiles, and the smaller tiles to retry with after running out of memory; each
scale's and tile's share of a time limit. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nstd.engine import memory
from nstd.errors import ParamError
from nstd.images import fit_size

#: VGG-19 halves the picture four times before conv5_1, and its 3×3 convolutions pad by
#: reflection, which needs two pixels: 16 px on the short side is the least that runs.
MIN_SIDE = 16


def check_size(width: int, height: int, size: int | None, largest: int | None = None,
               source: str = "the content image") -> tuple[int, int]:
    """The output size of a ``width``×``height`` image asked for at ``size`` (None: as is);
    raises :class:`ParamError` when its short side would be under :data:`MIN_SIDE`.

    ``largest``: the biggest size allowed (``limits.size``), so the message can say when
    no size works and the image must be cropped instead.
    """
    w, h = fit_size(width, height, size)
    if min(w, h) >= MIN_SIDE:
        return w, h
    asked = f"at size {size}" if size else "at its own size"
    need = math.ceil(MIN_SIDE * max(width, height) / min(width, height))
    text = (f"{source}: {width}×{height} px {asked} would be {w}×{h} px, too thin for VGG-19, which needs at "
            f"least {MIN_SIDE} px on the short side.")
    if largest is not None and need > largest:
        raise ParamError(f"{text} No size up to the limit ({largest}, limits.size) is enough: the image is too "
                         f"thin (sides {max(width, height) / min(width, height):,.0f}:1). Crop it so its long side "
                         f"is at most {largest // MIN_SIDE}× its short side.")
    raise ParamError(f"{text} Ask for size: {need} or more.")


# --- the scale plan: pure arithmetic on sizes, iterations, memory and time ---------------

#: Coarser scales than this carry no style information; they are skipped.
MIN_SCALE_SIDE = 32


@dataclass(frozen=True)
class Scale:
    """One scale of a job: its size and how many iterations it runs."""

    width: int
    height: int
    iterations: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def work(self) -> int:
        """Pixel-iterations: what the ETA counts, since a step's time grows with its pixels."""
        return self.width * self.height * self.iterations


def scales(width: int, height: int, params: Any) -> list[Scale]:
    """The job's scales, coarse to fine, skipping those too small to matter (the full size
    never is). The last runs ``iterations``, the others ``coarse_iterations`` (or as many)."""
    sizes = []
    for s in params.scales:
        w, h = max(1, round(width * s)), max(1, round(height * s))
        if s == 1.0 or min(w, h) >= MIN_SCALE_SIDE:
            sizes.append((w, h))
    coarse = params.coarse_iterations or params.iterations
    return [Scale(w, h, params.iterations if i == len(sizes) - 1 else coarse) for i, (w, h) in enumerate(sizes)]


def style_size(style_width: int, style_height: int, width: int, height: int, style_scale: float) -> tuple[int, int]:
    """A style is resized so its longest side is ``style_scale`` × the content's."""
    return fit_size(style_width, style_height, max(1, round(max(width, height) * style_scale)))


def tile_side(width: int, height: int, params: Any, last: bool, available: int) -> int | None:
    """None to optimise the whole image, else the tile side: ``tile_size`` on the last scale
    when the image is larger, or the largest that fits in ``available`` bytes."""
    if params.tile_size and last and max(width, height) > params.tile_size:
        return params.tile_size
    if memory.step_bytes(width * height, params.optimizer, params.lbfgs_memory) <= available:
        return None
    side = memory.tile_side(available, params.optimizer, params.lbfgs_memory, max(width, height))
    if side < memory.MIN_TILE:
        raise MemoryError(f"{width}x{height} needs tiles of at least {memory.MIN_TILE}px, but only "
                          f"{available / 2**30:.1f} GiB is free (limits.memory)")
    return side


def smaller_tile(width: int, height: int, side: int | None) -> int | None:
    """The tile side to retry with after running out of memory at ``side`` (None: whole):
    first tiles of about half the area, then half the side. None when nothing smaller works."""
    smaller = max(memory.MIN_TILE, int((width * height / 2) ** 0.5) // 64 * 64) if side is None \
        else side // 2 // 64 * 64
    return None if smaller < memory.MIN_TILE or smaller >= max(width, height) else smaller


def scale_budget(time_limit: float | None, elapsed: float, last: bool) -> float | None:
    """Seconds for a scale: all that is left on the last, a quarter of it on a coarse one
    (a warm start); None without a time limit."""
    if time_limit is None:
        return None
    left = max(0.0, time_limit - elapsed)
    return left if last else 0.25 * left


def visit_budget(scale_left: float | None, spent: float, visits_left: int) -> float | None:
    """Seconds for one tile visit: an equal share of what the scale has left."""
    return None if scale_left is None else max(0.0, scale_left - spent) / visits_left

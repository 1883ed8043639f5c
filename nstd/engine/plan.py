"""The job's plan as pure functions, checked and computed before any TensorFlow call.

The picture's size: a size VGG-19 cannot take fails with a sentence that says what size
works, never with an op's internal text. The scales, coarse to fine; whether a scale runs
whole or in tiles, and the smaller tiles to retry with after running out of memory; each
scale's and tile's share of a time limit. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
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


#: A detail pass adds the picture's finest octave: style Grams up to conv3_1 only, which
#: costs a third of a step to conv5_1 (VGG19.step_flops) and carries brush texture, not
#: layout; the layout is held to the pass before (see :func:`detail_params`).
DETAIL_LAYERS = (("conv1_1", 1.0), ("conv2_1", 1.0), ("conv3_1", 1.0))
#: A detail step's time per pixel, as a share of a full step's: what the ETA prices a pass
#: at before it has run. Its matrix products are a third of a full step's
#: (VGG19.step_flops), but the reflected border, the blur and the cropped feature maps are
#: memory-bound work of their own: measured 0.57 at 1024 px and 0.61 at 2048 px
#: (bench/prints.py, bf16 on the AVX-512 machine).
DETAIL_COST = 0.6
#: A detail pass holds the picture blurred by this many of the previous pass's pixels
#: (times the size ratio) to the previous pass's result: everything coarser stays. Measured
#: at 1024 px on real weights (bench/prints.py): at 0.6 the pass may only fill the new
#: octave, a narrow band that comes out as a regular woven grain (period 3.6 px); at 2.5 it
#: may reshape the strokes' edges too, and paints flowing marks, with content at 512 px
#: 0.0014 lower and style 0.02 higher than the 512 px picture's.
HOLD_SIGMA = 2.5
#: A detail pass's VGG sees its image reflected this many pixels past each side (its layers'
#: reach, 12 px at conv3_1, rounded up to the pooling grid). With VGG's zero padding the
#: passes painted a band of light and dark dashes along the border, 2–4 px deep at 1024 to
#: 4096 px, that only the padding reads (docs/results.md).
DETAIL_EDGE = 16
#: A detail size within this factor of the final size is skipped: the final pass does its work.
DETAIL_MERGE = 1.4


def vgg_edge(hold: float) -> int:
    """Pixels VGG sees reflected past each side (``VGG19.features(edge=…)``) for a scale
    with this ``hold``: :data:`DETAIL_EDGE` for a detail pass, none otherwise."""
    return DETAIL_EDGE if hold else 0


@dataclass(frozen=True)
class Scale:
    """One scale of a job: its size, how many iterations it runs, and for a detail pass the
    blur (σ in pixels) at which it holds the previous pass's picture."""

    width: int
    height: int
    iterations: int
    hold: float = 0.0  # > 0: a detail pass

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def detail(self) -> bool:
        return self.hold > 0

    @property
    def work(self) -> float:
        """Pixel-iterations: what the ETA counts, at a full or a detail step's rate."""
        return float(self.width * self.height * self.iterations)


def scales(width: int, height: int, params: Any) -> list[Scale]:
    """The job's scales, coarse to fine, skipping those too small to matter (the full size
    never is). A picture larger than ``paint_size`` is painted at that size first (the
    usual scales), then detail passes double it up to its size (:func:`detail_sizes`)."""
    paint = params.paint_size
    if paint and max(width, height) > paint * 1.25:
        base = fit_size(width, height, paint)
        passes = detail_sizes(base, (width, height))
    else:
        base, passes = (width, height), []
    sizes = []
    for s in params.scales:
        w, h = max(1, round(base[0] * s)), max(1, round(base[1] * s))
        if s == 1.0 or min(w, h) >= MIN_SCALE_SIDE:
            sizes.append((w, h))
    coarse = params.coarse_iterations or params.iterations
    out = [Scale(w, h, params.iterations if i == len(sizes) - 1 else coarse) for i, (w, h) in enumerate(sizes)]
    before = base
    for w, h in passes:
        out.append(Scale(w, h, params.detail_iterations, HOLD_SIGMA * max(w, h) / max(before)))
        before = (w, h)
    return out


def detail_sizes(base: tuple[int, int], final: tuple[int, int]) -> list[tuple[int, int]]:
    """Sizes of the detail passes from ``base`` to ``final``: doubling, the last one ``final``."""
    out = []
    side = max(base) * 2
    while side * DETAIL_MERGE < max(final):
        out.append(fit_size(*final, side))
        side *= 2
    return out + [final]


def detail_params(params: Any) -> Any:
    """The parameters of a detail pass: style on :data:`DETAIL_LAYERS` against the content's
    hold (``detail_hold``, no VGG content layer) and ``detail_tv``, at the job's strength on
    the normalised objective. ``detail_tv`` measured at 1024 px on real weights, the finest
    octave's energy over the photo's: 3.95 at 0, 1.51 at 0.15, 1.13 at 0.3, 0.53 at 1."""
    from nstd.params import strength_weights  # nstd.params imports the engine's weights

    strength = params.strength if params.strength is not None else 0.5
    c_w, s_w = strength_weights(strength)
    return dataclasses.replace(params, content_layers=(), style_layers=DETAIL_LAYERS, content_weight=c_w,
                               style_weight=s_w, strength=strength, normalize=True, laplacian_weight=0.0,
                               tv_weight=params.detail_tv)


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


# --- memory on paper ---------------------------------------------------------------------

#: What a scale keeps of the whole picture besides the step (bytes per pixel): the picture in
#: float64, its content (or held picture), start and best image in float32, and a tiled
#: scale's checkpoint serialised once in memory before it is written.
PICTURE_BYTES_PER_PIXEL = 24 + 12 + 12 + 12 + 24
#: The process itself: TensorFlow, the weights, a small job (peak RSS of a 512 px job,
#: bench/prints.py on the AVX-512 machine: 1.36 GiB).
PROCESS_BYTES = 3 * 2**29


@dataclass(frozen=True)
class ScaleMemory:
    """One scale's memory on paper: whole or in tiles of ``side``, and the peak it adds."""

    scale: Scale
    side: int | None
    peak: int


def memory_plan(width: int, height: int, params: Any, available: int) -> list[ScaleMemory]:
    """Each scale's peak memory above the running process, with ``available`` bytes free at
    the start: the whole picture's arrays, plus the larger of one step (whole, or one tile's
    at the side the engine would pick with what the arrays leave) and the forward passes
    that measure the scale's targets (the picture's own Grams, and a style image's at
    ``style_scale`` × its size, taken to be of the picture's shape)."""
    out = []
    plan = scales(width, height, params)
    for i, s in enumerate(plan):
        pictures = s.width * s.height * PICTURE_BYTES_PER_PIXEL
        room = max(0, available - pictures)
        side = tile_side(s.width, s.height, params, i == len(plan) - 1, room)
        step = memory.step_bytes(memory.pass_pixels(s.width, s.height, side, memory.TILE_MARGIN), params.optimizer,
                                 params.lbfgs_memory)
        style = (max(1, round(s.width * params.style_scale)), max(1, round(s.height * params.style_scale)))
        targets = max(memory.gram_bytes(s.width, s.height, room), memory.gram_bytes(*style, room))
        out.append(ScaleMemory(s, side, pictures + max(step, targets)))
    return out


def describe_memory(plan: list[ScaleMemory]) -> str:
    """One line per scale, for ``nstd check`` and the docs."""
    lines = []
    for m in plan:
        how = "whole" if m.side is None else f"tiles of {m.side} px"
        kind = "detail pass" if m.scale.detail else "scale"
        lines.append(f"{kind} {m.scale.width}×{m.scale.height}, {m.scale.iterations} iterations, {how}: "
                     f"{m.peak / 2**30:.1f} GiB")
    return "\n".join(lines)

"""Tiles of an image too large to optimise at once: what each reads, moves and owns.

The geometry of :class:`nstd.engine.optimise.TiledScale` and the whole image's style
statistics while tiles move, so the engine's loop stays a loop.

Each tile's moves fade out over ``RAMP`` pixels on both sides of every border it shares:
a pixel next to a border takes a fraction of each neighbour's step and the fractions sum
to one. A hard border (one tile moves a pixel, the next does not) leaves the pixels
beside it to serve every feature that straddles it; they go to extremes and draw 1-px
lines on the normalised objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from nstd.engine import memory

RAMP = 16  # pixels on each side of a shared border over which a tile's moves fade out
BAND = 16  # still pixels beside the moving ones whose features enter a tile's losses
MARGIN = memory.TILE_MARGIN  # context read around a tile (a multiple of 16: the pooling grid)

Frame = tuple[int, int, int, int]  # (top, bottom, left, right) pixels dropped from a window's edges


@dataclass(frozen=True)
class Window:
    """One tile: the part of the image it reads, the pixels it owns and how far each moves."""

    rows: slice  # the window read from the image (tile core plus context)
    cols: slice
    owned: memory.Tile  # image pixels this tile owns; the owned parts partition the image
    seen: Frame  # the frame of the window outside this tile's losses
    weight: np.ndarray  # (h, w) share of a step each window pixel takes; 0 = held still

    @property
    def region(self) -> tuple[slice, slice]:
        return self.rows, self.cols

    def moved(self, base: np.ndarray, proposal: np.ndarray) -> np.ndarray:
        """The window after a step from ``base`` towards ``proposal``, faded at the borders."""
        return base + self.weight[..., None] * (proposal - base)

    def objective(self, fg: Callable, base: np.ndarray) -> Callable:
        """``fg`` over the proposal: the solver's variable, mapped through :meth:`moved`."""
        w = self.weight[..., None]

        def wrapped(proposal: np.ndarray):
            f, g, parts = fg(self.moved(base, proposal))
            return f, g * w, parts

        return wrapped


def windows(width: int, height: int, side: int, shifted: bool = False) -> list[Window]:
    """The tiles of a ``width``×``height`` image with cores of at most ``side``, row by row.

    ``shifted``: tiles whose borders run through the middle of the plain layout's tiles,
    so a sweep over them refines, well inside a tile, every pixel that a sweep over the
    plain layout left as a blend of two tiles' moves.
    """
    out = []
    for (ry, oy), (rx, ox) in ((y, x) for y in _spans(height, side, shifted) for x in _spans(width, side, shifted)):
        owned = memory.Tile(*oy, *ox)
        r0, c0 = max(0, (ry[0] - MARGIN) // 16 * 16), max(0, (rx[0] - MARGIN) // 16 * 16)  # pooling grid kept
        r1, c1 = min(height, ry[1] + MARGIN), min(width, rx[1] + MARGIN)
        wy, wx = _profile(r0, r1, *oy, height), _profile(c0, c1, *ox, width)
        reach = RAMP + BAND  # moving pixels reach RAMP past the owned part; their features BAND more
        seen = (max(0, owned.y0 - reach - r0), max(0, r1 - owned.y1 - reach),
                max(0, owned.x0 - reach - c0), max(0, c1 - owned.x1 - reach))
        out.append(Window(slice(r0, r1), slice(c0, c1), owned, seen, np.outer(wy, wx)))
    return out


def borders(width: int, height: int, side: int) -> tuple[list[int], list[int]]:
    """(rows, columns) where one tile's pixels meet the next one's, in either layout:
    where a seam would show."""
    def starts(length: int) -> list[int]:
        return sorted({o[0] for shifted in (False, True) for _, o in _spans(length, side, shifted) if o[0] > 0})
    return starts(height), starts(width)


def _spans(length: int, side: int, shifted: bool) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Along one axis, per tile: (the core it reads around, the part it owns). Plain: the
    cores of :func:`memory.tiles` (one size, so one compiled step serves most), each
    owning what no earlier one covers. Shifted: parts from the middle of one plain part
    to the middle of the next (none narrower than a border's two ramps), read as they are.
    """
    cores = sorted({(t.x0, t.x1) for t in memory.tiles(length, 1, side)})
    owned = [(max([a] + [b0 for _, b0 in cores[:i]]), b) for i, (a, b) in enumerate(cores)]
    if not shifted:
        return list(zip(cores, owned))
    cuts = [0]
    for a, b in owned:
        middle = (a + b) // 2
        if middle - cuts[-1] >= 2 * RAMP and length - middle >= 2 * RAMP:
            cuts.append(middle)
    parts = list(zip(cuts, cuts[1:] + [length]))
    return list(zip(parts, parts))


def _profile(r0: int, r1: int, a: int, b: int, length: int) -> np.ndarray:
    """Along one axis of a window [r0, r1): 1 on the owned [a, b), fading to 0 over RAMP
    pixels past each shared border, rising from 0 over RAMP pixels before it."""
    i = np.arange(r0, r1, dtype=np.float64) + 0.5
    rise = np.ones_like(i) if a == 0 else np.clip((i - (a - RAMP)) / (2 * RAMP), 0.0, 1.0)
    fall = np.ones_like(i) if b == length else np.clip(((b + RAMP) - i) / (2 * RAMP), 0.0, 1.0)
    return np.minimum(rise, fall)


def nudged(held: list[tuple[np.ndarray, int]], deficit: list[np.ndarray]) -> list[np.ndarray]:
    """Per layer, a tile's Gram target: its own Gram (from ``held``, its (ΣFᵀF, positions))
    moved by what the whole image lacks (:meth:`StyleLedger.deficit`). The tile keeps the
    layout of the style it has and takes an equal part of what is missing, rather than
    becoming a whole painting in small."""
    return [(s / n + d).astype(np.float32) for (s, n), d in zip(held, deficit)]


class StyleLedger:
    """The whole image's Σ FᵀF and positions per style layer, kept while tiles move.

    ``measure(x, frame)`` gives (ΣFᵀF, positions) per layer over ``x`` minus ``frame``,
    with features computed in ``x``'s full context.
    """

    def __init__(self, measure: Callable[[np.ndarray, Frame], list[tuple[np.ndarray, int]]],
                 sums: list[np.ndarray], counts: list[int]) -> None:
        self.measure, self.sums, self.counts = measure, sums, counts

    @classmethod
    def of(cls, measure, image: np.ndarray, tiles: list[Window]) -> "StyleLedger":
        """Summed over the tiles' owned parts, which partition ``image``."""
        sums, counts = None, None
        for t in tiles:
            frame = (t.owned.y0 - t.rows.start, t.rows.stop - t.owned.y1,
                     t.owned.x0 - t.cols.start, t.cols.stop - t.owned.x1)
            parts = measure(image[t.region], frame)
            if sums is None:
                sums, counts = [np.zeros_like(g) for g, _ in parts], [0] * len(parts)
            for i, (g, n) in enumerate(parts):
                sums[i] += g
                counts[i] += n
        return cls(measure, sums, counts)

    def deficit(self, grams: list[np.ndarray]) -> list[np.ndarray]:
        """Per layer, what the whole image lacks: G* − its mean Gram."""
        return [g.astype(np.float64) - s / n for g, s, n in zip(grams, self.sums, self.counts)]

    def update(self, held: list[tuple[np.ndarray, int]], window: np.ndarray, tile: Window) -> None:
        """Account for the tile's pixels having moved from ``held`` to ``window``."""
        now = self.measure(window, tile.seen)
        for i in range(len(self.sums)):
            self.sums[i] += now[i][0] - held[i][0]

"""Predicting a job's memory from its shape, and tiling what does not fit.

Numbers measured with bench/ (TF 2.21, XLA, float32, forward to conv5_1 plus the
input gradient): peak RSS grows by about 200 MB + 2.4 KB per pixel over the
process's baseline, of which the solver's own arrays are part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

STEP_OVERHEAD = 256 * 2**20  # XLA workspace, compiled code
STEP_BYTES_PER_PIXEL = 2300  # activations kept for the gradient, gradients, temporaries
#: Forward only (targets): no activations kept for a gradient, but an eager pass holds a
#: layer's convolution, bias and ReLU outputs at once (3 × 256 B a pixel at conv1) and
#: returns conv1_1's features at full resolution: an upper bound, where 1200 (measured for
#: the full forward pass) counted too little for the full-resolution layers.
FORWARD_BYTES_PER_PIXEL = 2000
SAFETY = 0.85  # use at most this share of what is free
MIN_TILE = 128
TILE_MARGIN = 48  # context frame around a tile (pixels, a multiple of 16: conv5_1 sees 3 of its cells)
GRAM_TILE_MARGIN = 32  # context read around each core when an image's Grams are measured in tiles
#: Above this many pixels an image's Grams are measured in cores of GRAM_TILE, however much
#: memory is free: the image alone decides, so a job gets the same targets, and the same
#: picture, on every run. When cores followed free memory, a 4096 px job killed and resumed
#: while another program held memory measured its style in other tiles and painted other dabs.
GRAM_WHOLE_PIXELS = 2048 * 2048
GRAM_TILE = 1024


def solver_bytes_per_pixel(optimizer: str, lbfgs_memory: int) -> int:
    """float64 vectors of 3 values per pixel the solver keeps (x, g, history or moments)."""
    vectors = 2 * lbfgs_memory + 6 if optimizer == "lbfgs" else 5
    return vectors * 3 * 8


def step_bytes(pixels: int, optimizer: str = "lbfgs", lbfgs_memory: int = 8) -> int:
    """Extra memory one optimisation at ``pixels`` needs on top of the running process."""
    return STEP_OVERHEAD + pixels * (STEP_BYTES_PER_PIXEL + solver_bytes_per_pixel(optimizer, lbfgs_memory))


def forward_bytes(pixels: int) -> int:
    return STEP_OVERHEAD + pixels * FORWARD_BYTES_PER_PIXEL


def pass_pixels(width: int, height: int, side: int | None, margin: int) -> int:
    """Pixels one pass reads: the whole image (``side`` None), or one core of ``side`` in its margin."""
    return width * height if side is None else (side + 2 * margin) ** 2


def gram_side(width: int, height: int, available: int) -> int | None:
    """The core side an image's Gram matrices are measured in (None: whole): above
    GRAM_WHOLE_PIXELS in cores of GRAM_TILE, and smaller only when ``available`` bytes are
    too few (those targets then differ from a roomier run's)."""
    side = GRAM_TILE if width * height > GRAM_WHOLE_PIXELS else None
    if forward_bytes(pass_pixels(width, height, side, GRAM_TILE_MARGIN)) > available:
        side = forward_side(available, max(width, height), GRAM_TILE_MARGIN)
    return side


def gram_bytes(width: int, height: int, available: int) -> int:
    """Memory the forward pass that measures an image's Grams takes, as :func:`gram_side` cuts it."""
    return forward_bytes(pass_pixels(width, height, gram_side(width, height, available), GRAM_TILE_MARGIN))


def machine_memory(proc_cgroup: str = "/proc/self/cgroup", cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Physical memory, or the tightest limit on this process's cgroup and its parents.

    Under systemd the service's ``MemoryMax=`` is on its own cgroup
    (``/sys/fs/cgroup/system.slice/nstd.service/memory.max``), not on the root.
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in cgroup_limit_files(proc_cgroup, cgroup_root):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def cgroup_limit_files(proc_cgroup: str = "/proc/self/cgroup", cgroup_root: str = "/sys/fs/cgroup") -> list[str]:
    """memory.max of our cgroup v2 and every ancestor, plus the v1 limit file."""
    files = [os.path.join(cgroup_root, "memory", "memory.limit_in_bytes")]
    try:
        lines = open(proc_cgroup).read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hier, _, path = line.partition("::")
        if hier == "0" and path.startswith("/"):  # the v2 unified hierarchy
            parts = [p for p in path.split("/") if p]
            for i in range(len(parts), -1, -1):
                files.append(os.path.join(cgroup_root, *parts[:i], "memory.max"))
    if not any(f.endswith("memory.max") for f in files):
        files.append(os.path.join(cgroup_root, "memory.max"))
    return files


def rss() -> int:
    """This process's resident memory now."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def system_available(meminfo: str = "/proc/meminfo") -> int | None:
    """What the kernel says can still be allocated machine-wide (MemAvailable), or None."""
    try:
        with open(meminfo) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def budget(limit: int | None, meminfo: str = "/proc/meminfo") -> int:
    """Bytes a step may add: the limit (default: the machine) minus what we hold, and never
    more than the machine has free (another process's memory is not ours), with margin."""
    total = limit if limit is not None else machine_memory()
    room = total - rss()
    free = system_available(meminfo)
    if free is not None:
        room = min(room, free)
    return int(max(0, room) * SAFETY)


@dataclass(frozen=True)
class Tile:
    """A region [y0:y1, x0:x1] of the image."""

    y0: int
    y1: int
    x0: int
    x1: int


def _square_side(available: int, bytes_per_pixel: int, margin: int, longest: int) -> int:
    """The largest square core (multiple of 64, at most ``longest``) that fits with its margin."""
    side = int(((available - STEP_OVERHEAD) / bytes_per_pixel) ** 0.5) - 2 * margin \
        if available > STEP_OVERHEAD else 0
    return min(side, longest) // 64 * 64


def tile_side(available: int, optimizer: str, lbfgs_memory: int, longest: int) -> int:
    """The largest square tile whose optimisation, frame included, fits."""
    per_pixel = STEP_BYTES_PER_PIXEL + solver_bytes_per_pixel(optimizer, lbfgs_memory)
    return _square_side(available, per_pixel, TILE_MARGIN, longest)


def forward_side(available: int, longest: int, margin: int) -> int:
    """The largest square core (at least MIN_TILE) whose forward pass, margin included, fits."""
    return max(MIN_TILE, _square_side(available, FORWARD_BYTES_PER_PIXEL, margin, longest))


def _starts(length: int, side: int) -> tuple[int, list[int]]:
    """Evenly sized cores (multiples of 16, at most ``side``) covering ``length``; the last
    is aligned to the end, so no tile is left with a thin strip."""
    n = -(-length // side)
    core = min(length, -(-length // n // 16) * 16 if n > 1 else length)
    starts = [i * core for i in range(n - 1)] + [length - core]
    return core, sorted(set(starts))


def tiles(width: int, height: int, side: int) -> list[Tile]:
    """Tiles of one size (so one compiled step serves most of them), row by row."""
    th, ys = _starts(height, side)
    tw, xs = _starts(width, side)
    return [Tile(y, y + th, x, x + tw)
            for y in ys for x in xs]

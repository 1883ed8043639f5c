"""A job's checkpoint: everything needed to continue exactly where it stopped.

:class:`Checkpoint` is typed; on disk it is an npz file (no pickle) whose names are the
ones nstd has written since format 2, so a checkpoint written before the engine was split
into roles still resumes. A caller may add labels of its own (``params``: the parameters
it belongs to; ``frame``: a clip's frame), kept beside the engine's fields.

For callers written when a checkpoint was a dict, a :class:`Checkpoint` also reads as one
under its on-disk names (``cp["iteration"]``, ``cp.get("params")``, ``{**cp, "frame": 3}``),
and :func:`save_checkpoint` takes such a dict back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

#: What a checkpoint holds and how it is read back; raised when that changes (2: tiled scales
#: keep the whole image's style sums in both sweeps; 3: big pictures have detail passes,
#: which keep the picture they hold), so an older checkpoint starts over.
CHECKPOINT_FORMAT = 3


@dataclass
class TileState:
    """Where a tiled scale stood: the tile being refined and the whole image's statistics."""

    tile: int  # the visit being refined (0-based; both sweeps counted together)
    side: int  # the tile side the scale runs with
    image: np.ndarray  # the whole image, the tiles before this one already moved
    sums: list[np.ndarray]  # Σ FᵀF per style layer over the whole image (tiling.StyleLedger)
    counts: list[int]  # positions per style layer


@dataclass
class Checkpoint(Mapping):
    """The state of a job at one iteration of one scale (and tile)."""

    scale: int  # 0-based
    iteration: int  # iterations done in this scale (or tile)
    seed: int
    solver: dict[str, Any]  # the solver's own state (solvers.Solver.state)
    best_loss: float  # the lowest-loss image of this solver run so far
    best_x: np.ndarray
    best_parts: dict[str, float]
    initial: dict[str, float]  # loss parts at the first scale's starting image
    iterations_done: int  # over the whole job
    evaluations: int  # of finished solver runs only
    elapsed: float  # seconds of the job before this checkpoint
    history: list[dict[str, float]]
    precision: str = ""  # the steps' number format and compiler, e.g. "fp32/xla"
    tiled: TileState | None = None
    base: np.ndarray | None = None  # a detail pass: the picture it holds (the pass before's, resized)
    labels: dict[str, Any] = field(default_factory=dict)  # the caller's own: params, frame…

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint under its on-disk names."""
        out = {"solver": self.solver, "scale": self.scale, "iteration": self.iteration, "seed": self.seed,
               "best_loss": self.best_loss, "best_x": self.best_x, "best_parts": self.best_parts,
               "initial": self.initial, "iterations_done": self.iterations_done, "evaluations": self.evaluations,
               "elapsed": self.elapsed, "history": self.history, "precision": self.precision}
        if self.base is not None:
            out["base"] = self.base
        if self.tiled is not None:
            t = self.tiled
            out.update({"tile_sums": {str(i): a for i, a in enumerate(t.sums)}, "tile_counts": t.counts,
                        "tile": t.tile, "tile_side": t.side, "x_full": t.image})
        return {**out, **self.labels}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Checkpoint":
        """The inverse of :meth:`as_dict`; names it does not know are the caller's labels."""
        try:
            tiled = None
            if "tile" in d:
                sums = d["tile_sums"]
                tiled = TileState(int(d["tile"]), int(d["tile_side"]), d["x_full"],
                                  [np.asarray(sums[str(i)], np.float64) for i in range(len(sums))],
                                  [int(c) for c in d["tile_counts"]])
            return cls(int(d["scale"]), int(d["iteration"]), int(d["seed"]), d["solver"], d["best_loss"], d["best_x"],
                       dict(d.get("best_parts", {})), dict(d.get("initial", {})), int(d.get("iterations_done", 0)),
                       int(d.get("evaluations", 0)), float(d.get("elapsed", 0.0)), list(d.get("history", [])),
                       d.get("precision") or "", tiled, d.get("base"), {k: v for k, v in d.items() if k not in _FIELDS})
        except KeyError as exc:
            raise ValueError(f"it lacks {exc.args[0]!r}, which every checkpoint has") from None

    @classmethod
    def of(cls, value: "Checkpoint | Mapping[str, Any] | None") -> "Checkpoint | None":
        """A checkpoint from itself, from the dict of one, or None from None (or an empty dict)."""
        if value is None or isinstance(value, Checkpoint):
            return value
        return cls.from_dict(value) if value else None

    def to_bytes(self) -> bytes:
        """Serialised (npz, no pickle) for an atomic write."""
        return _flatten(self.as_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> "Checkpoint":
        """Raises ValueError for a checkpoint of another format, which must not be misread."""
        return cls.from_dict(_unflatten(data))

    # read as the dict a checkpoint used to be
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    __eq__ = object.__eq__
    __hash__ = object.__hash__


_FIELDS = ("solver", "scale", "iteration", "seed", "best_loss", "best_x", "best_parts", "initial", "iterations_done",
           "evaluations", "elapsed", "history", "precision", "tile_sums", "tile_counts", "tile", "tile_side", "x_full", "base")


def save_checkpoint(state: Checkpoint | Mapping[str, Any]) -> bytes:
    """A checkpoint (or the dict of one, as :meth:`Checkpoint.as_dict` gives) as bytes."""
    return (state if isinstance(state, Checkpoint) else Checkpoint.from_dict(state)).to_bytes()


def load_checkpoint(data: bytes) -> Checkpoint:
    return Checkpoint.from_bytes(data)


def _flatten(state: dict[str, Any]) -> bytes:
    """Arrays as npz members (lists of arrays stacked), everything else as JSON, nested
    dicts under ``a/b`` names."""
    arrays: dict[str, np.ndarray] = {"__format__": np.asarray(CHECKPOINT_FORMAT)}
    meta: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, np.ndarray):
            arrays[prefix] = value
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            arrays[prefix] = np.stack(value)
            meta[prefix] = "stack"
        elif isinstance(value, list) and not value:
            meta[prefix] = "emptylist"
        elif isinstance(value, dict):
            for k, v in value.items():
                put(f"{prefix}/{k}" if prefix else k, v)
            if not value:
                meta[prefix] = "emptydict"
        else:
            meta[prefix] = value

    put("", state)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta, default=float).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unflatten(data: bytes) -> dict[str, Any]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        made = int(z["__format__"]) if "__format__" in z.files else 1
        if made != CHECKPOINT_FORMAT:
            raise ValueError(f"it was made by another version of nstd (format {made}, this one reads "
                             f"{CHECKPOINT_FORMAT})")
        meta = json.loads(z["__meta__"].tobytes().decode())
        flat: dict[str, Any] = {k: z[k] for k in z.files if k not in ("__meta__", "__format__")}
    for k, v in meta.items():
        flat[k] = list(flat[k]) if v == "stack" else [] if v == "emptylist" else {} if v == "emptydict" else v
    out: dict[str, Any] = {}
    for k, v in flat.items():
        cur = out
        parts = k.split("/")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out

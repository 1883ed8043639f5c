"""Job parameters: one strict schema for the CLI, the job YAML and the daemon.

Parameters fall in two groups. The **objective** says what a good image is (layers,
weights, pooling); the **solver** says how to find it (optimizer, init, scales,
iterations, time limit). ``preset`` picks both; ``solver`` picks only the solver, so
``preset: origin`` + ``solver: fast`` solves the origin's objective our fastest way.
Precedence: defaults < preset < solver recipe < keys given explicitly.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nstd.engine.weights import CONV_LAYERS
from nstd.errors import ParamError
from nstd.untrusted import short

ORIGIN_STYLE_LAYERS = (("conv1_1", 0.2), ("conv2_1", 0.2), ("conv3_1", 0.2), ("conv4_1", 0.2), ("conv5_1", 0.2))


@dataclass(frozen=True)
class Params:
    """Fully resolved parameters of one job (engine part)."""

    # objective
    content_layers: tuple[tuple[str, float], ...] = (("conv4_2", 1.0),)
    style_layers: tuple[tuple[str, float], ...] = ORIGIN_STYLE_LAYERS
    content_weight: float = 10.0
    style_weight: float = 40.0
    tv_weight: float = 0.0
    laplacian_weight: float = 0.0
    normalize: bool = False
    strength: float | None = None
    pooling: str = "avg"
    style_scale: float = 1.0
    # solver
    solver: str = "fast"
    optimizer: str = "lbfgs"
    learning_rate: float = 2.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    lbfgs_memory: int = 8
    clip: bool = True
    init: str = "content"
    noise_ratio: float = 0.6
    scales: tuple[float, ...] = (0.5, 1.0)
    iterations: int = 100
    coarse_iterations: int | None = 20
    time_limit: float | None = None
    tile_size: int | None = None
    # output
    size: int | None = 512
    seed: int | None = None
    preserve_colors: str | None = None  # luminance | histogram
    preview_every: int = 0
    preset: str = "default"
    # video clips (nstd/video): ignored for still pictures
    temporal_weight: float = 1.0  # how firmly each frame is held to the previous one, warped by the flow
    frame_iterations: int = 30  # iterations of each frame after the first, which starts from the previous
    start: float = 0.0  # seconds into the clip where the part to stylize begins
    duration: float | None = None  # seconds of it (None: to the end)

    def as_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly form (layers as {name: weight})."""
        out = dataclasses.asdict(self)
        for key in ("content_layers", "style_layers"):
            out[key] = {name: float(w) for name, w in getattr(self, key)}
        out["scales"] = list(self.scales)
        return out


OBJECTIVE_KEYS = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "laplacian_weight",
                  "normalize", "strength", "pooling", "style_scale", "temporal_weight")
SOLVER_KEYS = ("optimizer", "learning_rate", "beta1", "beta2", "epsilon", "lbfgs_memory", "clip", "init",
               "noise_ratio", "scales", "iterations", "coarse_iterations", "time_limit", "tile_size",
               "frame_iterations")

#: Solver recipes. ``fast`` is the measured best time-to-quality on CPU (see bench/).
SOLVERS: dict[str, dict[str, Any]] = {
    # bench (256 px): a short coarse pass then L-BFGS at full size beats 100 coarse iterations 1.5×.
    "fast": {"optimizer": "lbfgs", "init": "content", "scales": (0.5, 1.0), "iterations": 100,
             "coarse_iterations": 20, "clip": True, "lbfgs_memory": 8},
    # The origin project: Adam lr 2.0 from a noisy content image, no clipping, 200 steps.
    "origin": {"optimizer": "adam", "learning_rate": 2.0, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
               "init": "noise", "noise_ratio": 0.6, "scales": (1.0,), "iterations": 200, "coarse_iterations": None,
               "clip": False},
    # TensorFlow's style-transfer tutorial: Adam lr 0.02, β1 0.99, ε 0.1 on [0, 1] pixels,
    # i.e. lr 0.02·255 and ε 0.1/255 on our 0–255 pixels; content init; clipped; 1000 steps.
    "tutorial": {"optimizer": "adam", "learning_rate": 0.02 * 255, "beta1": 0.99, "beta2": 0.999,
                 "epsilon": 0.1 / 255, "init": "content", "scales": (1.0,), "iterations": 1000, "coarse_iterations": None,
                 "clip": True},
}

#: ``strength`` s → style:content ratio r = STRENGTH_MID · (s / (1 − s))^STRENGTH_SLOPE. On the
#: normalised objective both picture measures move about linearly in log r from 0.1 to 10
#: (bench/quality.py), so a logit gives equal-looking steps; s = 0.5 is r = 1.5.
STRENGTH_MID, STRENGTH_SLOPE = 1.5, 1.2


def strength_weights(strength: float) -> tuple[float, float]:
    """(content_weight, style_weight) on the normalised objective for ``strength`` in [0, 1]."""
    if strength <= 0.0:
        return 1.0, 0.0
    if strength >= 1.0:
        return 0.0, 1.0
    r = STRENGTH_MID * (strength / (1.0 - strength)) ** STRENGTH_SLOPE
    return 1.0 / (1.0 + r), r / (1.0 + r)


PRESETS: dict[str, dict[str, Any]] = {
    # Measured on real VGG-19 weights over several pairs (bench/quality.py, docs/results.md).
    # laplacian_weight 1: the same style match with more of the photo's edges kept, on every pair measured.
    "default": {"solver": "fast", "normalize": True, "strength": 0.5, "tv_weight": 0.0, "laplacian_weight": 1.0,
                "content_layers": {"conv4_2": 1.0}, "style_layers": dict(ORIGIN_STYLE_LAYERS), "pooling": "avg"},
    # The origin project's recipe: its objective, its solver, 400×300-class images.
    "origin": {"solver": "origin", "size": 400, "content_layers": {"conv4_2": 1.0},
               "style_layers": dict(ORIGIN_STYLE_LAYERS), "content_weight": 10.0, "style_weight": 40.0,
               "tv_weight": 0.0, "laplacian_weight": 0.0, "normalize": False, "strength": None, "pooling": "avg",
               "style_scale": 1.0},
}


# --- validation ------------------------------------------------------------------------


def _number(lo: float | None = None, hi: float | None = None, integer: bool = False, none_ok: bool = False):
    def check(key: str, v: Any) -> Any:
        if v is None and none_ok:
            return None
        ok_types = (int,) if integer else (int, float)
        if isinstance(v, bool) or not isinstance(v, ok_types):
            raise ParamError(f"'{key}' must be {'an integer' if integer else 'a number'}, got {short(v)}.")
        if not math.isfinite(v):
            raise ParamError(f"'{key}' must be a finite number, got {v!r}.")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ParamError(f"'{key}' = {v!r} is out of range; allowed: {lo} to {hi if hi is not None else 'any'}.")
        return int(v) if integer else float(v)
    return check


def _choice(*options: str):
    def check(key: str, v: Any) -> str:
        if v not in options:
            raise ParamError(f"'{key}' = {short(v)} is not allowed; choose one of: {', '.join(options)}.")
        return v
    return check


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ParamError(f"'{key}' must be true or false, got {short(v)}.")
    return v


def _colours(key: str, v: Any) -> str | None:
    """false/none, or how the content's colours are kept: luminance (true) or histogram."""
    if v is False or v is None:
        return None
    if v is True:
        return "luminance"
    if v in ("luminance", "histogram"):
        return v
    raise ParamError(f"'{key}' = {short(v)} is not allowed; choose false, luminance (or true) or histogram.")


def _layers(key: str, v: Any) -> tuple[tuple[str, float], ...]:
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)):
        if not v:
            raise ParamError(f"'{key}' must name at least one layer.")
        v = {name: 1.0 / len(v) for name in v}  # a plain list: equal weights summing to 1
    if not isinstance(v, Mapping) or not v:
        raise ParamError(f"'{key}' must be a list of layer names or a mapping layer: weight, got {short(v)}.")
    out = []
    for name, weight in v.items():
        if name not in CONV_LAYERS:
            raise ParamError(f"'{key}': unknown layer {name!r}; known layers: {', '.join(CONV_LAYERS)}.")
        out.append((name, _number(0)(f"{key}.{name}", weight)))
    return tuple(out)


def _scales(key: str, v: Any) -> tuple[float, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ParamError(f"'{key}' must be a list of fractions ending at 1.0, e.g. [0.5, 1.0]; got {short(v)}.")
    vals = tuple(_number(0.05, 1.0)(key, s) for s in v)
    if list(vals) != sorted(vals) or vals[-1] != 1.0:
        raise ParamError(f"'{key}' must increase and end at 1.0 (coarse to fine), got {list(vals)}.")
    return vals


def _init(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ParamError(f"'{key}' must be noise, content, style or an image path; got {short(v)}.")
    return v


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "content_layers": _layers,
    "style_layers": _layers,
    "content_weight": _number(0),
    "style_weight": _number(0),
    "tv_weight": _number(0),
    "laplacian_weight": _number(0, 100),  # bounded: no job overflows the float32 weights
    "normalize": _bool,
    "strength": _number(0, 1, none_ok=True),
    "pooling": _choice("avg", "max"),
    "style_scale": _number(0.05, 8.0),
    "solver": _choice(*SOLVERS),
    "optimizer": _choice("lbfgs", "adam"),
    "learning_rate": _number(1e-6),
    "beta1": _number(0, 0.999999),
    "beta2": _number(0, 0.999999),
    "epsilon": _number(0),
    "lbfgs_memory": _number(1, 100, integer=True),
    "clip": _bool,
    "init": _init,
    "noise_ratio": _number(0, 1),
    "scales": _scales,
    "iterations": _number(1, 1_000_000, integer=True),
    "coarse_iterations": _number(1, 1_000_000, integer=True, none_ok=True),
    "time_limit": _number(0.1, none_ok=True),
    "tile_size": _number(128, 65536, integer=True, none_ok=True),
    "size": _number(16, 65536, integer=True, none_ok=True),
    "seed": _number(0, 2**32 - 1, integer=True, none_ok=True),
    "preserve_colors": _colours,
    "preview_every": _number(0, integer=True),
    "preset": _choice(*PRESETS),
    "temporal_weight": _number(0, 1e6),
    "frame_iterations": _number(1, 1_000_000, integer=True),
    "start": _number(0, 1e7),
    "duration": _number(0.001, 1e7, none_ok=True),
}


def unknown_key_error(key: str, known: tuple[str, ...] | list[str], where: str) -> ParamError:
    hint = difflib.get_close_matches(key, known, n=1)
    did = f" Did you mean '{hint[0]}'?" if hint else ""
    return ParamError(f"{where}: unknown key '{key}'.{did} Known keys: {', '.join(sorted(known))}.")


def resolve(raw: Mapping[str, Any], where: str = "parameters", extra_keys: tuple[str, ...] = ()) -> Params:
    """Validate ``raw`` strictly and apply defaults < preset < solver < explicit keys."""
    allowed = tuple(CHECKS) + extra_keys
    for key in raw:
        if key not in allowed:
            raise unknown_key_error(str(key), allowed, where)
    try:
        preset_name = CHECKS["preset"]("preset", raw.get("preset", "default"))
        preset = dict(PRESETS[preset_name])
        solver = CHECKS["solver"]("solver", raw.get("solver", preset.pop("solver", "fast")))
        preset.pop("solver", None)
        merged: dict[str, Any] = {**preset, **SOLVERS[solver], "solver": solver, "preset": preset_name}
        explicit_weights = [k for k in ("content_weight", "style_weight") if k in raw]
        if explicit_weights and raw.get("strength") is not None:
            raise ParamError(f"give either 'strength' or {' and '.join(map(repr, explicit_weights))}, not both: "
                             "strength sets the content and style weights.")
        if explicit_weights:
            merged["strength"] = None  # the preset's strength gives way to the user's own weights
        merged.update({k: v for k, v in raw.items() if k in CHECKS})
        values = {k: CHECKS[k](k, v) for k, v in merged.items()}
        if values.get("strength") is not None:
            if not values.get("normalize"):
                raise ParamError("'strength' needs the normalised objective (normalize: true, as in preset "
                                 "default); with preset origin set content_weight and style_weight instead.")
            values["content_weight"], values["style_weight"] = strength_weights(values["strength"])
    except ParamError as exc:
        raise ParamError(f"{where}: {exc}") from None
    return Params(**values)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are YAML (numbers, lists, true/false)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--set {item!r}: expected key=value, e.g. --set tv_weight=0.001")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ParamError(f"--set {item!r}: value is not valid YAML ({exc}).") from None
    return out

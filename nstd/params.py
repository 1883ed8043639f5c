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
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nstd.engine.weights import CONV_LAYERS
from nstd.errors import ParamError
from nstd.untrusted import short

ORIGIN_STYLE_LAYERS = (("conv1_1", 0.2), ("conv2_1", 0.2), ("conv3_1", 0.2), ("conv4_1", 0.2), ("conv5_1", 0.2))

#: Inches per unit of a print-size length.
INCHES = {"in": 1.0, "cm": 1 / 2.54, "mm": 1 / 25.4}
UNIT_NAMES = {"in": "in", "inch": "in", "inches": "in", '"': "in", "cm": "cm", "mm": "mm"}
PRINT_FORMS = ("12x8in@300dpi (fitted inside 12 × 8 in, keeping the photo's shape), 24in@300dpi (24 in wide), "
               "x8in@300dpi (8 in high), or a mapping {width: 24in, height: 16in, dpi: 300} (either side or both); "
               "units in, cm or mm")


@dataclass(frozen=True)
class Length:
    """A print-size length as the user gave it: ``value`` in ``unit`` (in, cm or mm)."""

    value: float
    unit: str

    @property
    def inches(self) -> float:
        return self.value * INCHES[self.unit]

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"


@dataclass(frozen=True)
class PrintSize:
    """A print-size request: a width, a height or both (a box the picture fits inside), at ``dpi``."""

    width: Length | None
    height: Length | None
    dpi: float

    def longest_side(self, width: int, height: int) -> int:
        """Pixels on the long side of a ``width``×``height`` photo printed this way."""
        scales = []
        if self.width is not None:
            scales.append(self.width.inches * self.dpi / width)
        if self.height is not None:
            scales.append(self.height.inches * self.dpi / height)
        # floor: with a box, neither side may come out a pixel over it
        return max(1, math.floor(max(width, height) * min(scales) + 1e-6))

    def describe(self, width: int, height: int) -> str:
        """'a 36×24 in print at 300 dpi' for a ``width``×``height`` photo."""
        unit = (self.width or self.height).unit  # type: ignore[union-attr]
        longest = self.longest_side(width, height)
        w, h = (longest * width / max(width, height), longest * height / max(width, height))
        per = self.dpi * INCHES[unit]
        return f"a {round(w / per, 1):g}×{round(h / per, 1):g} {unit} print at {self.dpi:g} dpi"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.width is not None:
            out["width"] = str(self.width)
        if self.height is not None:
            out["height"] = str(self.height)
        out["dpi"] = int(self.dpi) if self.dpi == int(self.dpi) else self.dpi
        return out


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
    paint_size: int | None = 512  # painted at this size; larger pictures add detail passes (engine/plan.py)
    detail_iterations: int = 40  # iterations of each detail pass
    detail_tv: float = 0.5  # a detail pass's total variation: brush texture, not pixel noise
    detail_hold: float = 300.0  # how firmly a detail pass keeps the picture before it
    # output
    size: int | None = 512
    print: PrintSize | None = None  # sets size (with the photo's shape, see fit_print) and dpi
    dpi: float = 72.0  # written into PNG, JPEG, TIFF (and WebP's EXIF)
    jpeg_quality: int = 95
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
        out["print"] = self.print.as_dict() if self.print is not None else None
        return out


OBJECTIVE_KEYS = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "laplacian_weight",
                  "normalize", "strength", "pooling", "style_scale", "temporal_weight")
#: Keys that change only how the result is written, never the picture's pixels.
ENCODING_KEYS = ("dpi", "jpeg_quality")
SOLVER_KEYS = ("optimizer", "learning_rate", "beta1", "beta2", "epsilon", "lbfgs_memory", "clip", "init",
               "noise_ratio", "scales", "iterations", "coarse_iterations", "time_limit", "tile_size",
               "frame_iterations", "paint_size", "detail_iterations", "detail_tv", "detail_hold")

#: Solver recipes. ``fast`` is the measured best time-to-quality on CPU (see bench/).
SOLVERS: dict[str, dict[str, Any]] = {
    # bench (256 px): a short coarse pass then L-BFGS at full size beats 100 coarse iterations 1.5×.
    "fast": {"optimizer": "lbfgs", "init": "content", "scales": (0.5, 1.0), "iterations": 100,
             "coarse_iterations": 20, "clip": True, "lbfgs_memory": 8},
    # The origin project: Adam lr 2.0 from a noisy content image, no clipping, 200 steps.
    "origin": {"optimizer": "adam", "learning_rate": 2.0, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
               "init": "noise", "noise_ratio": 0.6, "scales": (1.0,), "iterations": 200, "coarse_iterations": None,
               "clip": False, "paint_size": None},
    # TensorFlow's style-transfer tutorial: Adam lr 0.02, β1 0.99, ε 0.1 on [0, 1] pixels,
    # i.e. lr 0.02·255 and ε 0.1/255 on our 0–255 pixels; content init; clipped; 1000 steps.
    "tutorial": {"optimizer": "adam", "learning_rate": 0.02 * 255, "beta1": 0.99, "beta2": 0.999,
                 "epsilon": 0.1 / 255, "init": "content", "scales": (1.0,), "iterations": 1000, "coarse_iterations": None,
                 "clip": True, "paint_size": None},
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


_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(inches|inch|in|cm|mm|\")?"
_SHORT_PRINT = re.compile(rf"^(?:{_NUM}\s*{_UNIT})?\s*(?:[x×]\s*{_NUM}\s*{_UNIT})?\s*(?:@\s*{_NUM}\s*(?:dpi|ppi))?$",
                          re.IGNORECASE)
_LENGTH = re.compile(rf"^{_NUM}\s*{_UNIT}$", re.IGNORECASE)


def _dpi_value(key: str, v: Any) -> float:
    if isinstance(v, str):
        m = re.fullmatch(rf"\s*{_NUM}\s*(?:dpi|ppi)?\s*", v, re.IGNORECASE)
        v = float(m.group(1)) if m else v
    return _number(1, 10_000)(key, v)


def _length(key: str, v: Any, text: Any) -> Length:
    m = _LENGTH.match(v.strip()) if isinstance(v, str) else None
    if m is None or m.group(2) is None:
        raise ParamError(f"'{key}' = {short(v)} in {short(text)} is not a length: give a number and a unit, like "
                         f"24in, 61cm or 610mm. Accepted forms: {PRINT_FORMS}.")
    return _side(key, float(m.group(1)), m.group(2), text)


def _side(key: str, value: float, unit: str, text: Any) -> Length:
    if not 0 < value <= 100_000:
        raise ParamError(f"'{key}' = {short(text)}: each side must be more than 0 (and at most 100000). "
                         f"Accepted forms: {PRINT_FORMS}.")
    return Length(value, UNIT_NAMES[unit.lower()])


def _print(key: str, v: Any) -> tuple[Length | None, Length | None, float | None] | None:
    """``print``: (width, height, dpi or None) as given; :func:`resolve` fills the dpi in."""
    if v is None:
        return None
    if isinstance(v, Mapping):
        unknown = [str(k) for k in v if k not in ("width", "height", "dpi")]
        if unknown:
            raise ParamError(f"'{key}': unknown key {short(unknown[0])} in {short(v)}; a print size has width, "
                             f"height and dpi. Accepted forms: {PRINT_FORMS}.")
        width = _length(f"{key}.width", v["width"], v) if v.get("width") is not None else None
        height = _length(f"{key}.height", v["height"], v) if v.get("height") is not None else None
        dpi = _dpi_value(f"{key}.dpi", v["dpi"]) if v.get("dpi") is not None else None
    elif isinstance(v, str):
        m = _SHORT_PRINT.match(v.strip())
        if m is None or (m.group(1) is None and m.group(3) is None):
            raise ParamError(f"'{key}' = {short(v)} is not a print size. Accepted forms: {PRINT_FORMS}.")
        w, w_unit, h, h_unit, dpi_text = m.groups()
        if (h_unit or w_unit) is None:
            raise ParamError(f"'{key}' = {short(v)} has no unit. Accepted forms: {PRINT_FORMS}.")
        width = _side(key, float(w), w_unit or h_unit, v) if w is not None else None
        height = _side(key, float(h), h_unit or w_unit, v) if h is not None else None
        dpi = float(dpi_text) if dpi_text is not None else None
        if dpi is not None and not 1 <= dpi <= 10_000:
            raise ParamError(f"'{key}' = {short(v)}: the dpi must be 1 to 10000. Accepted forms: {PRINT_FORMS}.")
    else:
        raise ParamError(f"'{key}' = {short(v)} is not a print size. Accepted forms: {PRINT_FORMS}.")
    if width is None and height is None:
        raise ParamError(f"'{key}' = {short(v)} gives neither a width nor a height. Accepted forms: {PRINT_FORMS}.")
    return width, height, dpi


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
    "paint_size": _number(64, 65536, integer=True, none_ok=True),
    "detail_iterations": _number(1, 1_000_000, integer=True),
    "detail_tv": _number(0, 1e6),
    "detail_hold": _number(0, 1e9),
    "size": _number(16, 65536, integer=True, none_ok=True),
    "print": _print,
    "dpi": _dpi_value,
    "jpeg_quality": _number(1, 100, integer=True),
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
        if raw.get("print") is not None and "size" in raw:
            raise ParamError("give either 'size' or 'print', not both: a print size sets the size.")
        merged.update({k: v for k, v in raw.items() if k in CHECKS})
        values = {k: CHECKS[k](k, v) for k, v in merged.items()}
        if values.get("print") is not None:
            width, height, dpi = values["print"]
            if dpi is None:
                if "dpi" not in values:
                    raise ParamError(f"'print' = {short(raw['print'])} needs a dpi: add it (e.g. 12x8in@300dpi, or "
                                     "dpi: 300 in the mapping) or set 'dpi'.")
                dpi = values["dpi"]
            values["print"], values["dpi"], values["size"] = PrintSize(width, height, dpi), dpi, None
        if values.get("strength") is not None:
            if not values.get("normalize"):
                raise ParamError("'strength' needs the normalised objective (normalize: true, as in preset "
                                 "default); with preset origin set content_weight and style_weight instead.")
            values["content_weight"], values["style_weight"] = strength_weights(values["strength"])
    except ParamError as exc:
        raise ParamError(f"{where}: {exc}") from None
    return Params(**values)


def layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter layers merged, later ones winning (built-in options < config defaults < the
    job). ``size`` and ``print`` are one choice: a layer that gives either replaces both."""
    out: dict[str, Any] = {}
    for layer in layers:
        if "size" in layer or "print" in layer:
            out.pop("size", None)
            out.pop("print", None)
        out.update(layer)
    return out


def fit_print(params: Params, content_size: tuple[int, int], largest: int | None = None,
              where: str = "parameters") -> Params:
    """``params`` with a print-size request turned into ``size`` for this photo: the long side
    in pixels. Refused, with what to change, when that is over ``largest`` (limits.size)."""
    if params.print is None:
        return params
    size = params.print.longest_side(*content_size)
    if largest is not None and size > largest:
        fits = math.floor(params.print.dpi * largest / size)
        hint = f" (at this print size, {fits} dpi fits)" if fits >= 1 else ""
        raise ParamError(f"{where}: {params.print.describe(*content_size)} is {size} px on its long side, over "
                         f"limits.size {largest}; ask for a lower dpi{hint} or a smaller print, or raise "
                         "limits.size.")
    return dataclasses.replace(params, size=size)


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

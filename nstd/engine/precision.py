"""Which number format and compiler a step runs with, chosen by measurement.

``compute`` is the format of the convolutions (fp32, bf16, fp16); Gram matrices, losses,
the gradient handed to the solver and the solver's state stay fp32. ``compiler`` is XLA
(``jit_compile``) or TensorFlow's graph executor (oneDNN kernels on CPU). Which is fastest
depends on the machine: on an AVX-512 BF16 CPU, bf16 without XLA runs a VGG step about
twice as fast as fp32 with XLA; on an AVX2 CPU, fp32 with XLA beats fp32 without it.
So ``auto`` times the candidates the hardware supports on the job's real shape, keeps the
fastest whose loss and gradient agree with fp32's, and remembers the choice per shape, in
the process and on disk (per machine and TensorFlow version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nstd.engine.backend import tf

log = logging.getLogger("nstd")

COMPUTES = ("auto", "fp32", "bf16", "fp16")
COMPILERS = ("auto", "xla", "graph")
DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
FP16_LOSS_SCALE = 1024.0  # fp16 gradients of small losses underflow without it
MEASURE_STEPS = 3  # timed steps per candidate, after one that compiles
MEASURE_MIN_PIXELS = 192 * 192  # below this, compiling the candidates costs more than any saves (see small_shape)
PROBE_PIXELS = 512 * 512  # a larger shape is timed on a centre crop of this many pixels (objective.proxy_crop)
LOSS_TOLERANCE = 0.01  # a candidate's loss may differ from fp32's by this much, relatively
GRADIENT_COSINE = 0.99  # and its gradient must point the same way


@dataclass(frozen=True)
class Precision:
    compute: str = "fp32"
    compiler: str = "xla"

    def __str__(self) -> str:
        return f"{self.compute}/{self.compiler}"

    @property
    def dtype(self):
        return DTYPES[self.compute]

    @property
    def jit(self) -> bool:
        return self.compiler == "xla"

    @classmethod
    def parse(cls, text: str) -> "Precision":
        compute, _, compiler = str(text).partition("/")
        return cls(compute, compiler or "xla")


DEFAULT = Precision()


def small_shape(compute: str, compiler: str) -> Precision:
    """What a shape too small to be worth measuring runs with: fp32, and on a CPU the graph
    executor, which compiles a VGG step in 2.0 s where XLA takes 5.0 s while stepping as fast
    (192x144, AVX2: 0.73 vs 0.71 s; AVX-512: faster). A small shape runs few steps (a coarse
    scale, a tile edge), so the compile is most of its cost. On a GPU, XLA's fused kernels."""
    if compiler == "auto":
        compiler = "xla" if tf.config.list_logical_devices("GPU") else "graph"
    return Precision("fp32" if compute == "auto" else compute, compiler)


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability, or None without one."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    major, minor = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    return int(major), int(minor)


def supported_computes() -> list[str]:
    """fp32 always; bf16 on CPUs with AVX512_BF16 or AMX and GPUs from Ampere; fp16 on GPUs."""
    out = ["fp32"]
    cap = gpu_capability()
    if cap is not None:
        if cap >= (8, 0):
            out.append("bf16")
        out.append("fp16")
    elif {"avx512_bf16", "amx_bf16"} & cpu_flags():
        out.append("bf16")
    return out


def candidates(compute: str, compiler: str, supported: tuple[str, ...] | None = None) -> list[Precision]:
    """What ``auto`` times, fp32 (or the format asked for) first; ``supported``: the formats
    this machine runs (default :func:`supported_computes`)."""
    computes = list(supported or supported_computes()) if compute == "auto" else [compute]
    compilers = ["xla", "graph"] if compiler == "auto" else [compiler]
    return [Precision(c, k) for c in computes for k in compilers]


def machine_key() -> str:
    """Choices carry over only to the same processor, accelerator and TensorFlow."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    raw = json.dumps([platform.machine(), cpu, sorted(cpu_flags()), gpus, str(gpu_capability()), tf.__version__])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class ChoiceCache:
    """Shape key -> chosen precision, kept in a JSON file per machine and TensorFlow version."""

    def __init__(self, folder: Path | None = None) -> None:
        base = folder or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nstd"
        self.path = base / f"precision-{machine_key()}.json"
        self.choices: dict[str, str] = {}
        try:
            data = json.loads(self.path.read_text())
            self.choices = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            pass

    def get(self, key: str) -> Precision | None:
        text = self.choices.get(key)
        return Precision.parse(text) if text else None

    def rate(self, key: str) -> float | None:
        """Seconds per pixel of one step with the choice for ``key``, as measured (None: not timed)."""
        try:
            return float(self.choices[f"rate|{key}"])
        except (KeyError, ValueError):
            return None

    def put(self, key: str, choice: Precision, rate: float | None = None) -> None:
        self.choices[key] = str(choice)
        if rate is not None:
            self.choices[f"rate|{key}"] = f"{rate:.4g}"
        try:
            from nstd.atomic import write_bytes_atomic

            write_bytes_atomic(self.path, json.dumps(self.choices, indent=1, sort_keys=True).encode())
        except OSError as exc:  # a read-only home: the choice still holds for this process
            log.warning("cannot save the precision choice to %s: %s", self.path, exc)


@dataclass(frozen=True)
class Measuring:
    """How ``auto`` measures: shapes under ``min_pixels`` are not timed; each candidate runs
    ``steps`` timed steps; a reduced format must keep the loss within ``loss_tolerance``
    (relative) and the gradient's cosine to fp32's at least ``gradient_cosine``.
    ``supported``: the formats to time (default: what this machine runs). A shape over
    ``probe_pixels`` is timed on a centre crop of that many pixels."""

    min_pixels: int = MEASURE_MIN_PIXELS
    probe_pixels: int = PROBE_PIXELS
    steps: int = MEASURE_STEPS
    loss_tolerance: float = LOSS_TOLERANCE
    gradient_cosine: float = GRADIENT_COSINE
    supported: tuple[str, ...] | None = None


class Chooser:
    """Which precision each step shape runs with: as configured, or measured once per shape
    (``auto``) and remembered in the process and in a :class:`ChoiceCache`.

    Shapes are anything with ``key``, ``height`` and ``width`` (:class:`nstd.engine.steps.StepShape`).
    """

    def __init__(self, compute: str = "auto", compiler: str = "auto", choices: ChoiceCache | None = None,
                 measuring: Measuring | None = None) -> None:
        if compute not in COMPUTES or compiler not in COMPILERS:
            raise ValueError(f"compute {compute!r} / compiler {compiler!r}: choose compute from "
                             f"{', '.join(COMPUTES)} and compiler from {', '.join(COMPILERS)}")
        self.compute, self.compiler = compute, compiler
        self.measuring = measuring or Measuring()
        self.choices = choices  # made when first needed: it reads the machine's description
        self.measured: list[Any] = []  # the shapes this chooser timed, in order
        self._chosen: dict[str, Precision] = {}
        self.rates: dict[str, float] = {}  # shape key -> seconds per pixel of a step, where timed

    def known(self, shape: Any) -> Precision | None:
        """What this shape was given already, if anything."""
        return self._chosen.get(shape.key)

    def for_one_evaluation(self, shape: Any) -> Precision:
        """For one evaluation (scoring an image) ``auto`` measures nothing: it takes the
        choice already made for this shape, or the cheapest compile; timing candidates would
        cost more than the step itself."""
        return self.known(shape) or small_shape(self.compute, self.compiler)

    def choose(self, shape: Any, probe: Callable[[Precision], tuple]) -> Precision:
        """The precision ``shape`` runs with. ``probe(how)`` runs the step compiled with
        ``how`` once on real inputs and returns (loss, gradient)."""
        if self.compute != "auto" and self.compiler != "auto":
            return Precision(self.compute, self.compiler)
        if shape.key in self._chosen:
            return self._chosen[shape.key]
        if shape.height * shape.width < self.measuring.min_pixels:  # compile time dominates
            choice = small_shape(self.compute, self.compiler)
        else:
            if self.choices is None:
                self.choices = ChoiceCache()
            cache_key = f"{shape.key}|{self.compute}|{self.compiler}"
            choice, rate = self.choices.get(cache_key), self.choices.rate(cache_key)
            if choice is None:
                choice, rate = self._measure(shape, probe)
                self.choices.put(cache_key, choice, rate)
            if rate is not None:
                self.rates[shape.key] = rate
        self._chosen[shape.key] = choice
        return choice

    def rate(self) -> float | None:
        """Seconds per pixel of a full step as last timed in this process or on disk: what a
        plan's cost is estimated from before its first step (None: nothing timed yet)."""
        if not self.rates and "auto" in (self.compute, self.compiler):  # nothing timed in this process: the disk's
            if self.choices is None:
                self.choices = ChoiceCache()
            for key in self.choices.choices:
                if key.startswith("rate|"):
                    self.rates[key[5:]] = self.choices.rate(key[5:]) or 0.0
        full = [r for k, r in self.rates.items() if "|detail" not in k and r > 0]
        return full[-1] if full else None

    def _measure(self, shape: Any, probe: Callable[[Precision], tuple]) -> tuple[Precision, float]:
        """Time each candidate on the real shape; the fastest that agrees with fp32 wins."""
        self.measured.append(shape)
        m = self.measuring
        timings: dict[Precision, float] = {}
        refused: list[str] = []
        reference = None
        for how in candidates(self.compute, self.compiler, m.supported):
            probe(how)  # compile
            t0 = time.monotonic()
            for _ in range(m.steps):
                loss, grad = probe(how)
                loss, grad = float(loss), grad.numpy().ravel().astype(np.float64)
            seconds = (time.monotonic() - t0) / m.steps
            if reference is None:  # the first candidate is fp32 (or the format asked for): the yardstick
                reference = (loss, grad)
                timings[how] = seconds
                continue
            cosine = float(grad @ reference[1] / max(np.linalg.norm(grad) * np.linalg.norm(reference[1]), 1e-30))
            if abs(loss - reference[0]) > m.loss_tolerance * abs(reference[0]) or cosine < m.gradient_cosine:
                refused.append(f"{how} (loss {loss:.4g} vs {reference[0]:.4g}, gradient cosine {cosine:.4f})")
                continue
            timings[how] = seconds
        choice = min(timings, key=lambda h: timings[h])
        base = timings.get(DEFAULT)
        log.info("step %dx%d: %s%s → %s%s", shape.width, shape.height,
                 ", ".join(f"{h} {t:.3f}s" for h, t in timings.items()),
                 f"; refused {', '.join(refused)}" if refused else "", choice,
                 f" ({base / timings[choice]:.2f}× fp32/xla)" if base else "")
        return choice, timings[choice] / (reference[1].size / 3)  # per pixel of the shape timed (maybe a proxy)

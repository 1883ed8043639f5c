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
from dataclasses import dataclass
from pathlib import Path

from nstd.engine.backend import tf

log = logging.getLogger("nstd")

COMPUTES = ("auto", "fp32", "bf16", "fp16")
COMPILERS = ("auto", "xla", "graph")
DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
FP16_LOSS_SCALE = 1024.0  # fp16 gradients of small losses underflow without it
MEASURE_STEPS = 3  # timed steps per candidate, after one that compiles
MEASURE_MIN_PIXELS = 192 * 192  # below this, compiling the candidates costs more than any saves (see small_shape)
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
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability", (0, 0)))  # type: ignore[return-value]


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


def candidates(compute: str, compiler: str) -> list[Precision]:
    computes = supported_computes() if compute == "auto" else [compute]
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

    def put(self, key: str, choice: Precision) -> None:
        self.choices[key] = str(choice)
        try:
            from nstd.atomic import write_bytes_atomic

            write_bytes_atomic(self.path, json.dumps(self.choices, indent=1, sort_keys=True).encode())
        except OSError as exc:  # a read-only home: the choice still holds for this process
            log.warning("cannot save the precision choice to %s: %s", self.path, exc)

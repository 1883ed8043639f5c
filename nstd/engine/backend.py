"""TensorFlow, imported once, with its start-up chatter filtered and its real errors kept.

TensorFlow's C++ start-up writes straight to file descriptor 2, before any log setting
applies: an absl notice, oneDNN and CUDA-stub info lines, and on every CPU-only machine
an ``E0000 … failed call to cuInit`` that is no error at all. They are captured while
TensorFlow loads and lists its devices; every other line is passed on unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

_INFO = re.compile(r"^I\d{4} ")
_NOTICE = "All log messages before absl::InitializeLog() is called are written to STDERR"


def has_nvidia_device() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def chatter(line: str, nvidia: bool | None = None) -> bool:
    """A start-up line that says nothing a user must act on. ``nvidia``: whether this
    machine has an NVIDIA device (default: look), where a failed cuInit is a real error."""
    if _NOTICE in line or _INFO.match(line) or not line.strip():
        return True
    return "failed call to cuInit" in line and not (has_nvidia_device() if nvidia is None else nvidia)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture fd 2, then pass on what is not :func:`chatter`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines() if not chatter(line)]
            if kept:
                os.write(2, ("\n".join(kept) + "\n").encode())


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
with filtered_stderr():
    import tensorflow as tf  # noqa: E402

    tf.config.list_physical_devices("GPU")  # CUDA's probe happens here, inside the filter

# One thread hands out the ops; each op still runs on every core. With two or more, ops of
# one step run side by side, and the oneDNN kernels' results then depend on which ran
# beside which: the same detail-pass step on the same image gave two or three different
# gradients in 15 calls (fp32 and bf16; XLA not), so a job did not give the same picture
# twice and could not resume to the picture it would have made. One thread costs about 5%
# of a job's time on 2 cores (docs/results.md): the work is in the kernels.
try:
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:  # this process ran TensorFlow before importing nstd: its threads are set
    logging.getLogger(__name__).warning(
        "TensorFlow was started before nstd: the same job may not give the same picture twice")

# "N of the last M calls … triggered tf.function retracing": expected when `auto` compiles one
# step per candidate format; a user can do nothing about it. TF's real errors still show.
tf.get_logger().setLevel("ERROR")

__all__ = ["tf"]

"""TensorFlow, imported once, with its start-up chatter filtered and its real errors kept.

TensorFlow's C++ start-up writes straight to file descriptor 2, before any log setting
applies: an absl notice, oneDNN and CUDA-stub info lines, and on every CPU-only machine
an ``E0000 … failed call to cuInit`` that is no error at all. They are captured while
TensorFlow loads and lists its devices; every other line is passed on unchanged.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
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


class Repeatable:
    """Grappler's memory optimiser off for the compiled steps a thread calls.

    It rewrites a sum of large tensors (a gradient's parts from every loss that reads an
    image or a feature map) into a running total added in the order the parts arrive,
    and that order changes: between calls when ops run side by side, and between
    processes even with one thread handing out ops. The same detail step on one image
    gave 4–5 different gradients in 15 calls, and each fresh process one of three, so a big
    job neither repeated its picture nor resumed to the picture it would have made. Off,
    a step takes the same time and memory (docs/results.md).

    The setting lives in each thread's function-call options, which TensorFlow makes anew
    after some configuration calls, so :meth:`ensure` checks them before every step.
    """

    def __init__(self) -> None:
        from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
        from tensorflow.python.eager import context

        self._context, self._config = context.context, config_pb2.ConfigProto
        self._off = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        self._done = threading.local()

    def ensure(self) -> None:
        options = self._context().function_call_options
        if getattr(self._done, "options", None) is options:
            return
        config = self._config.FromString(options.config_proto_serialized)
        config.graph_options.rewrite_options.memory_optimization = self._off
        options.config_proto_serialized = config
        self._done.options = options


repeatable = Repeatable()

# "N of the last M calls … triggered tf.function retracing": expected when `auto` compiles one
# step per candidate format; a user can do nothing about it. TF's real errors still show.
tf.get_logger().setLevel("ERROR")

__all__ = ["repeatable", "tf"]

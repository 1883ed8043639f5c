"""Unit tests of service decisions that the end-to-end tests cannot provoke on demand."""

from __future__ import annotations

import errno

import tensorflow as tf

from nstd.service import is_transient


def test_out_of_memory_and_disk_full_are_retried_other_errors_are_not():
    assert is_transient(MemoryError())
    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert is_transient(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_transient(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert not is_transient(OSError(errno.EACCES, "Permission denied"))
    assert not is_transient(ValueError("bad value"))

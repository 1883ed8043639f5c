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


def test_an_internal_error_is_retried_then_fails_the_job_with_every_input(tmp_path, thin_mat):
    """A test double for the engine that always crashes: the daemon must not loop forever."""
    import yaml

    from nstd import config, jobs
    from nstd.service import Daemon
    from tests.conftest import make_image
    from tests.daemon_harness import write_config

    cfg = config.load(write_config(tmp_path, thin_mat, service={"retries": 1, "retry_backoff": 0}))
    daemon = Daemon(cfg)
    daemon.prepare()
    inbox = cfg.paths.inbox
    make_image(inbox / "x.content.png")
    make_image(inbox / "x.style.png", seed=3)
    candidate = [c for c in jobs.discover(inbox) if c.name == "x"][0]
    work = jobs.claim(candidate, daemon.work_root, 0.0)

    def crash(_work):
        raise RuntimeError("engine bug")

    daemon.process = crash  # a test double: the real engine is covered end to end elsewhere
    for _ in range(2):
        try:
            daemon.process(work)
        except RuntimeError as exc:
            daemon.internal_error(work, exc)
    error = yaml.safe_load((cfg.paths.failed / "x" / "error.yaml").read_text())
    assert error["phase"] == "internal" and "engine bug" in error["message"] and error["traceback"]
    assert sorted(error["inputs"]) == ["x.content.png", "x.style.png"] and not work.exists()

"""The worker, the runner and the work item in the process: claims, leases, publishing,
the retry policy. The engine is a test double here; end-to-end tests use the real one."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import yaml

from nstd import config
from nstd.spool import jobs
from nstd.daemon import runner
from nstd.daemon.runner import CRASHED, FAILED, TRANSIENT, Outcome, RetryPolicy, is_transient
from nstd.daemon.scanner import Handoff, Pending, Scanner
from nstd.daemon.status import StatusBoard
from nstd.daemon.worker import Worker
from nstd.spool.workitem import Meta, WorkItem, lease_is_stale
from tests.conftest import make_image
from tests.daemon_harness import write_config

pytestmark = pytest.mark.unit


class Engine:
    """A test double for nstd.engine.Engine: returns a flat grey image at once, or raises."""

    device = "test double"

    def __init__(self, raises: list[BaseException] | None = None) -> None:
        self.raises, self.calls = list(raises or []), 0

    def stylize(self, content, styles, params, **kw):
        from nstd.engine.stylize import Result

        self.calls += 1
        if self.raises:
            raise self.raises.pop(0)
        loss = {"loss": 1.0, "content": 0.5, "style": 0.5, "tv": 0.0}
        return Result(np.full((8, 10, 3), 128, np.float32), None, 1, loss, loss, [], 1, 1, "iterations",
                      {"total": 0.01})


class Weights:
    source, format, sha256 = "double", "npz", "0" * 64


@pytest.fixture
def setup(tmp_path, thin_mat):
    cfg = config.load(write_config(tmp_path, thin_mat, service={"retries": 2, "retry_backoff": 10}))
    for p in (cfg.paths.inbox, cfg.paths.outbox, cfg.paths.failed, cfg.paths.archive, cfg.paths.state / "work"):
        p.mkdir(parents=True, exist_ok=True)
    return cfg


def drop(cfg, name="x") -> jobs.Candidate:
    make_image(cfg.paths.inbox / f"{name}.content.png", seed=1)
    make_image(cfg.paths.inbox / f"{name}.style.png", seed=2)
    return [c for c in jobs.discover(cfg.paths.inbox) if c.name == name][0]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def worker(cfg, engine, clock=None) -> tuple[Worker, Handoff, StatusBoard]:
    board, handoff = StatusBoard("host"), Handoff()
    scanner = Scanner(lambda: cfg, board, handoff, lambda work: False)
    return Worker(lambda: cfg, engine, Weights(), board, handoff, scanner, lambda: False,
                  clock=clock or Clock()), handoff, board


def test_out_of_memory_and_disk_full_are_retried_other_errors_are_not():
    import tensorflow as tf

    assert is_transient(MemoryError())
    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert is_transient(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_transient(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert not is_transient(OSError(errno.EACCES, "Permission denied"))
    assert not is_transient(ValueError("bad value"))


def test_the_retry_policy_backs_off_and_gives_up():
    policy = RetryPolicy(retries=2, backoff=10)
    assert [policy.delay(Outcome(TRANSIENT), n) for n in (1, 2, 3)] == [10, 20, None]
    assert [policy.delay(Outcome(CRASHED), n) for n in (1, 2, 3)] == [10, 10, None]
    assert policy.delay(Outcome(FAILED), 1) is None  # the job's own fault: never retried


def test_a_claim_moves_the_files_and_writes_meta_and_lease_before_anyone_can_see_it(setup):
    cfg = setup
    c = drop(cfg)
    item = WorkItem.claim(c, cfg.paths.state / "work", arrived=123.0)
    assert sorted(p.name for p in item.inputs.iterdir()) == ["x.content.png", "x.style.png"]
    assert not list(cfg.paths.inbox.iterdir())  # moved, not copied
    meta = Meta.read(item.path / "meta.yaml")
    assert (meta.name, meta.form, meta.arrived, meta.attempts) == ("x", "pair", 123.0, 0)
    lease = yaml.safe_load((item.path / "lease.yaml").read_text())
    assert lease["pid"] == os.getpid() and lease["released"] is False
    # a second daemon that saw the same candidate gets nothing and leaves nothing behind
    assert WorkItem.claim(c, cfg.paths.state / "work", arrived=123.0) is None
    assert [p.name for p in (cfg.paths.state / "work").iterdir()] == [item.path.name]


def test_only_one_daemon_takes_over_an_abandoned_folder(setup):
    cfg = setup
    item = WorkItem.claim(drop(cfg), cfg.paths.state / "work", 0.0)
    first = WorkItem.take_over(item.path, cfg.paths.state / "work")
    assert first is not None and first.meta.name == "x"
    assert WorkItem.take_over(item.path, cfg.paths.state / "work") is None  # the rename already happened


def test_lease_staleness_on_a_controlled_clock(tmp_path):
    now = 1_000_000.0
    lease = {"host": "elsewhere", "pid": 1, "heartbeat": now, "released": False}
    assert not lease_is_stale(lease, 30, now=now + 29)
    assert lease_is_stale(lease, 30, now=now + 31)
    assert lease_is_stale({**lease, "released": True}, 30, now=now)
    gone = {**lease, "host": jobs.host_name(), "pid": 2**22 + 12345}  # no such process on this host
    assert lease_is_stale(gone, 30, now=now)
    assert not lease_is_stale({}, 30, tmp_path, now=tmp_path.stat().st_mtime + 10)  # unreadable, but young


def test_the_worker_publishes_result_report_and_log_and_archives_the_originals(setup):
    cfg = setup
    w, handoff, board = worker(cfg, Engine())
    handoff.publish([Pending(drop(cfg), 5.0)], [])
    assert w.loop(now=0.0)
    image = cfg.paths.outbox / "x.png"
    assert image.is_file() and (cfg.paths.outbox / "x.report.yaml").is_file() and (cfg.paths.outbox / "x.log").is_file()
    report = yaml.safe_load((cfg.paths.outbox / "x.report.yaml").read_text())
    assert report["status"] == "done" and report["job"]["attempts"] == 1 and report["device"] == "test double"
    assert sorted(p.name for p in (cfg.paths.archive / "x").iterdir() if not p.name.startswith(".")) == \
        ["x.content.png", "x.style.png"]
    assert not list((cfg.paths.state / "work").iterdir()) and not w.holding()
    assert board.snapshot()["recent_done"][-1]["name"] == "x"
    assert not w.loop(now=1.0)  # nothing left


def test_a_transient_failure_is_retried_with_back_off_then_publishes(setup):
    cfg = setup
    engine = Engine(raises=[MemoryError("no room"), OSError(errno.ENOSPC, "disk full")])
    clock = Clock()
    w, handoff, _ = worker(cfg, engine, clock)
    handoff.publish([Pending(drop(cfg), 5.0)], [])
    assert w.loop(clock.now)
    (work,) = w.deferred
    assert w.deferred[work] == 10.0 and Meta.read(work / "meta.yaml").attempts == 1
    clock.now = 9.0
    assert not w.loop(clock.now) and engine.calls == 1  # not before its time
    clock.now = 10.0
    assert w.loop(clock.now) and w.deferred[work] == 30.0  # 10 + 2 × 10: the back-off doubles
    clock.now = 30.0
    assert w.loop(clock.now) and engine.calls == 3
    assert (cfg.paths.outbox / "x.png").is_file() and not w.deferred and not work.exists()


def test_an_internal_error_is_retried_then_fails_the_job_with_every_input(setup):
    cfg = setup
    clock = Clock()
    w, handoff, board = worker(cfg, Engine(), clock)
    handoff.publish([Pending(drop(cfg), 5.0)], [])

    def crash(*a, **k):  # a bug outside the engine: in the publish step
        raise RuntimeError("publish bug")

    real, runner.publish = runner.publish, crash
    try:
        while w.loop(clock.now) or w.deferred:
            clock.now += 10
            assert clock.now < 100, "the worker kept retrying"
    finally:
        runner.publish = real
    error = yaml.safe_load((cfg.paths.failed / "x" / "error.yaml").read_text())
    assert error["phase"] == "internal" and "publish bug" in error["message"] and error["traceback"]
    assert sorted(error["inputs"]) == ["x.content.png", "x.style.png"]
    assert not list((cfg.paths.state / "work").iterdir()) and board.snapshot()["recent_failed"]


def test_a_job_error_fails_at_once_with_its_phase(setup):
    cfg = setup
    w, handoff, _ = worker(cfg, Engine(raises=[ValueError("NaN in the loss")]))
    handoff.publish([Pending(drop(cfg), 5.0)], [])
    assert w.loop(now=0.0) and not w.deferred
    error = yaml.safe_load((cfg.paths.failed / "x" / "error.yaml").read_text())
    assert error["phase"] == "stylize" and "NaN in the loss" in error["message"]


def test_a_stop_keeps_the_job_held_with_its_lease_released(setup):
    from nstd.engine import Interrupted

    cfg = setup
    w, handoff, _ = worker(cfg, Engine(raises=[Interrupted("stopped at scale 1/2, iteration 3")]))
    handoff.publish([Pending(drop(cfg), 5.0)], [])
    assert w.loop(now=0.0)
    (work,) = w.holding()
    assert yaml.safe_load((work / "lease.yaml").read_text())["released"] is True
    assert "checkpoint saved" in (work / "job.log").read_text() and (work / "input" / "x.content.png").is_file()


def test_a_lease_renewed_while_the_job_is_removed_leaves_no_folder_behind(tmp_path):
    """The heartbeat renews a held job's lease on its own thread while the job ends and its
    folder is removed; a renewal landing mid-removal must not leave the folder behind
    (seen once in CI as a work folder that outlived its published job)."""
    import threading

    from nstd.spool.workitem import renew_lease

    leftovers = []
    for i in range(60):
        work = tmp_path / f"w{i}"
        (work / "input").mkdir(parents=True)
        for k in range(200):  # enough entries that the removal takes a while
            (work / "input" / f"f{k}").write_bytes(b"x")
        item = WorkItem(work, Meta(f"j{i}"))
        done = threading.Event()

        def beat() -> None:
            while not done.is_set():
                renew_lease(work)

        t = threading.Thread(target=beat)
        t.start()
        item.remove()
        done.set()
        t.join()
        if work.exists():
            leftovers.append(sorted(p.name for p in work.iterdir()))
    assert not leftovers, leftovers[:3]
    assert not list(tmp_path.glob(".*")), "the removal's own hidden name is gone too"


def test_a_tensorflow_error_gets_a_plain_sentence_and_its_text_stays_in_the_job_log(setup):
    import tensorflow as tf

    op_text = "{{function_node __wrapped__Conv2D}} Computed output size would be negative: -1 [Op:Conv2D]"
    w, handoff, board = worker(setup, Engine(raises=[tf.errors.InvalidArgumentError(None, None, op_text)]))
    c = drop(setup, "tf")
    handoff.publish([Pending(c, 0.0)], [])
    assert w.loop(0.0)
    err = yaml.safe_load((setup.paths.failed / "tf" / "error.yaml").read_text())
    assert "stopped inside TensorFlow (InvalidArgumentError)" in err["message"], err["message"]
    assert "Conv2D" not in yaml.safe_dump(err)
    assert op_text in (setup.paths.failed / "tf" / "job.log").read_text()
    assert "Conv2D" not in board.snapshot()["recent_failed"][-1]["error"]


def test_a_job_sharing_a_style_with_one_just_claimed_waits_for_the_next_scan(setup):
    """The scan that called the style shared is stale once one of its two jobs is claimed:
    the other must not copy it too and leave it in the inbox for ever."""
    inbox = setup.paths.inbox
    make_image(inbox / "art.png", seed=2)
    for name in ("one", "two"):
        make_image(inbox / f"{name}.png", seed=1)
        (inbox / f"{name}.yaml").write_text(f"content: {name}.png\nstyle: art.png\n")
    clock = Clock()
    w, handoff, board = worker(setup, Engine(), clock)
    for _ in range(3):
        clock.now += 10
        w.scanner.loop(clock.now)
        while w.loop(clock.now):
            pass
    assert sorted(p.name for p in inbox.iterdir()) == []
    for name in ("one", "two"):
        assert sorted(p.name for p in (setup.paths.archive / name).iterdir() if not p.name.startswith(".")) == \
            ["art.png", f"{name}.png", f"{name}.yaml"]

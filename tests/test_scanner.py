"""The scanner in the process, on a controlled clock: settling, hand-off, refusals, orphans."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from nstd import config as config_mod
from nstd.spool import jobs
from nstd.daemon.scanner import Handoff, Scanner
from nstd.daemon.status import StatusBoard
from tests.conftest import make_image

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path: Path, held=lambda work: False):
    raw = {"paths": {k: k for k in ("inbox", "outbox", "failed", "archive", "state")},
           "watch": {"settle_seconds": 5, "incomplete_timeout": 60}, "service": {"lease_timeout": 30}}
    cfg = config_mod.parse(raw, "test", tmp_path)
    for p in (cfg.paths.inbox, cfg.paths.state / "work"):
        p.mkdir(parents=True)
    board, handoff, clock = StatusBoard("host"), Handoff(), Clock()
    return cfg, board, handoff, clock, Scanner(lambda: cfg, board, handoff, held, clock)


def waiting(board: StatusBoard) -> dict[str, str]:
    return {w["name"]: w["reason"] for w in board.snapshot()["waiting"]}


def test_a_job_is_handed_over_only_once_it_stopped_changing(tmp_path):
    cfg, board, handoff, clock, scanner = setup(tmp_path)
    make_image(cfg.paths.inbox / "a.content.png", seed=1)
    make_image(cfg.paths.inbox / "a.style.png", seed=2)
    scanner.loop()
    assert handoff.take()[1] == [] and "still changing" in waiting(board)["a"]
    clock.now += 6  # past settle_seconds, nothing changed
    scanner.loop()
    (job,) = handoff.take()[1]
    assert job.candidate.name == "a" and board.snapshot()["queue_length"] == 1 and handoff.ready.is_set()
    (cfg.paths.inbox / "a.style.png").write_bytes((cfg.paths.inbox / "a.style.png").read_bytes() + b"")
    os.utime(cfg.paths.inbox / "a.style.png", (time.time() + 5,) * 2)  # touched again: settle anew
    scanner.loop()
    assert handoff.take()[1] == []


def test_a_refused_claim_waits_until_its_files_change(tmp_path):
    cfg, board, handoff, clock, scanner = setup(tmp_path)
    make_image(cfg.paths.inbox / "b.content.png", seed=1)
    make_image(cfg.paths.inbox / "b.style.png", seed=2)
    scanner.loop()
    clock.now += 6
    scanner.loop()
    (job,) = handoff.take()[1]
    scanner.refuse(job.candidate)
    scanner.loop()
    assert handoff.take()[1] == [] and waiting(board)["b"] == "cannot be claimed (see failed/)"
    os.utime(cfg.paths.inbox / "b.style.png", (time.time() + 9,) * 2)
    scanner.loop()
    clock.now += 6
    scanner.loop()
    assert [p.candidate.name for p in handoff.take()[1]] == ["b"]


def test_an_undecodable_job_waits_then_expires_with_its_reason(tmp_path):
    cfg, board, handoff, clock, scanner = setup(tmp_path)
    good = make_image(tmp_path / "ok.jpg", (64, 64))
    (cfg.paths.inbox / "c.content.jpg").write_bytes(good.read_bytes()[:300])  # a copy that stopped short
    make_image(cfg.paths.inbox / "c.style.png", seed=2)
    scanner.loop()
    clock.now += 6
    scanner.loop()
    assert handoff.take()[1] == [] and "does not decode yet" in waiting(board)["c"]
    clock.now += 61  # past incomplete_timeout
    scanner.loop()
    (job,) = handoff.take()[1]
    assert job.expired and "incomplete" in job.expired


def test_orphaned_work_is_offered_unless_held_or_alive(tmp_path):
    held: set[Path] = set()
    cfg, board, handoff, clock, scanner = setup(tmp_path, lambda work: work in held)
    work_root = cfg.paths.state / "work"
    dead, alive, mine = work_root / "1-dead", work_root / "2-alive", work_root / "3-mine"
    for w, lease in ((dead, {"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 100}),
                     (alive, {"host": "elsewhere", "pid": 1, "heartbeat": time.time()}),
                     (mine, {"host": jobs.host_name(), "pid": os.getpid(), "heartbeat": time.time() - 100})):
        (w / "input").mkdir(parents=True)
        (w / "lease.yaml").write_text(yaml.safe_dump(lease))
    held.add(mine)
    scanner.loop()
    assert handoff.take()[0] == [dead]
    assert handoff.take()[0] == []  # taken once


def test_a_work_folder_removed_while_the_scan_looks_at_it_never_fails_the_scan(tmp_path, thin_mat):
    """A finished job's work folder is renamed to a hidden name and deleted while the
    scanner may be listing state/work: the scan must shrug, not raise. A dangling link
    stands for a folder gone between the listing and its stat."""
    from tests.daemon_harness import write_config

    cfg = config_mod.load(write_config(tmp_path, thin_mat))
    work_root = cfg.paths.state / "work"
    work_root.mkdir(parents=True)
    cfg.paths.inbox.mkdir(parents=True)
    os.symlink(tmp_path / "removed-meanwhile", work_root / ".gone-123-job")
    Scanner(lambda: cfg, StatusBoard("host"), Handoff(), lambda work: False).loop()  # raised FileNotFoundError

"""Several daemons sharing one inbox through a real Redis server (``queue.backend: redis``).

Three ``nstd run`` processes started from one config stand for three hosts mounting one
share. Redis is Debian's ``redis-server``, started here on a free loopback port with its
append-only file on; the tests skip where it is not installed.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from nstd import config
from nstd.spool import jobs
from nstd.daemon.scanner import Pending
from nstd.spool.workitem import WorkItem
from tests.conftest import make_image
from tests.daemon_harness import Daemon, free_port, outputs, show_logs, wait_until, write_config
from tests.test_daemon import LONG, drop_yaml_job, work_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[fleet]')")
from nstd.daemon.fleet import RedisQueue  # noqa: E402  (needs redis-py)


class RedisServer:
    """redis-server in a subprocess: appendfsync always, so a kill -9 loses no acknowledged write."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (Debian: apt install redis-server; .ci/run does)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=open(self.folder / "redis.log", "a"), stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), 20, "redis-server to answer")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def server(tmp_path):
    s = RedisServer(tmp_path / "redis")
    yield s
    s.kill()


def fleet_config(root: Path, weights: Path, url: str, **extra) -> Path:
    return write_config(root, weights, queue={"backend": "redis", "url": url},
                        service={"lease_timeout": 4, "heartbeat_seconds": 0.5, "checkpoint_every": 20}, **extra)


def drop_pairs(inbox: Path, n: int) -> list[str]:
    inbox.mkdir(parents=True, exist_ok=True)
    names = [f"j{i:02d}" for i in range(n)]
    for i, name in enumerate(names):  # the style first: a pair is complete once its content is there
        make_image(inbox / f"{name}.style.png", (24, 24), seed=100 + i)
        make_image(inbox / f"{name}.content.png", (32, 24), seed=i)
    return names


def done_counts(daemons: list[Daemon]) -> Counter:
    """How many times each job was published, from every worker's log."""
    return Counter(m for d in daemons for m in re.findall(r"job=(\S+) done:", d.log))


def holder(daemons: list[Daemon], name: str) -> Daemon:
    """The worker whose log says it last claimed or took over ``name``."""
    return wait_until(lambda: next((d for d in daemons if re.search(rf"job={name} (claimed|taken over)", d.log)), None),
                      30, f"a worker holding {name}")


def stop_all(daemons: list[Daemon]) -> list[int]:
    """Stop every worker still running (SIGTERM, then wait for it): their exit codes."""
    return [d.stop() for d in daemons if d.proc.poll() is None]


def test_thirty_jobs_on_three_workers_complete_exactly_once(tmp_path, thin_mat, server):
    server.start()
    root = tmp_path / "share"
    cfg = fleet_config(root, thin_mat, server.url)
    names = drop_pairs(root / "inbox", 30)
    daemons = [Daemon(cfg) for _ in range(3)]
    try:
        wait_until(lambda: len(outputs(root, "*.report.yaml")) >= 30, 240, "30 reports")
        wait_until(lambda: not list((root / "state" / "work").iterdir()), 10, "empty work folders")
        status = subprocess.run([sys.executable, "-m", "nstd", "status", "--config", str(cfg)], capture_output=True,
                                text=True)
        assert status.returncode == 0 and "fleet queue (redis" in status.stdout, status.stdout
        assert stop_all(daemons) == [0, 0, 0]  # nothing can be published after this: count
        assert sorted(p.name for p in outputs(root)) == sorted(f"{n}.png" for n in names)  # no j00-1.png
        counts = done_counts(daemons)
        assert counts == Counter({n: 1 for n in names}), counts
        assert sum(1 for d in daemons if "done:" in d.log) >= 2  # the work was shared
        assert not list((root / "inbox").iterdir()) and not list((root / "failed").iterdir())
        assert not list((root / "state" / "work").iterdir())
    finally:
        for d in daemons:
            d.stop()
        show_logs(daemons)


@contextlib.contextmanager
def long_job_on(tmp_path, thin_mat, server, workers: int):
    """``workers`` ready daemons, one long job dropped; yields (share, daemons, the job's holder)
    once the job has written a checkpoint."""
    server.start()
    root = tmp_path / "share"
    cfg = fleet_config(root, thin_mat, server.url)
    daemons = [Daemon(cfg) for _ in range(workers)]
    try:
        for d in daemons:
            d.wait_log("ready:")
        drop_yaml_job(root / "inbox", "long", LONG)
        wait_until(lambda: work_checkpoint(root), 60, "a checkpoint")
        yield root, daemons, holder(daemons, "long")
    finally:
        for d in daemons:
            d.stop()
        show_logs(daemons)


def test_a_killed_worker_s_job_is_resumed_elsewhere_from_its_checkpoint(tmp_path, thin_mat, server):
    with long_job_on(tmp_path, thin_mat, server, 3) as (root, daemons, victim):
        victim.kill()  # SIGKILL: no release, no goodbye; the server's idle clock runs out
        t_kill = time.monotonic()
        wait_until(lambda: any("taken over" in d.log for d in daemons if d is not victim), 30, "a take-over")
        assert time.monotonic() - t_kill < 4 + 5  # within lease_timeout (4 s), plus a poll
        wait_until(lambda: (root / "outbox" / "long.report.yaml").exists(), 180, "the resumed job's report")
        assert stop_all(daemons) == [0, 0]  # the two live ones; then count
        assert [p.name for p in outputs(root)] == ["long.png"] and done_counts(daemons) == Counter({"long": 1})
        log = (root / "outbox" / "long.log").read_text()
        assert "resuming from checkpoint at scale 1, iteration" in log
        assert yaml.safe_load((root / "outbox" / "long.report.yaml").read_text())["iterations"] == LONG["iterations"]


def test_a_paused_worker_that_comes_back_loses_the_job_and_publishes_nothing(tmp_path, thin_mat, server):
    with long_job_on(tmp_path, thin_mat, server, 3) as (root, daemons, paused):
        paused.send(signal.SIGSTOP)  # a frozen VM, or a partition: alive, but silent
        other = wait_until(lambda: next((d for d in daemons if d is not paused and "job=long taken over" in d.log),
                                        None), 30, "a take-over")
        paused.send(signal.SIGCONT)
        paused.wait_log("lost the job to another worker", 30)
        wait_until(lambda: (root / "outbox" / "long.report.yaml").exists(), 180, "the new owner's report")
        assert paused.proc.poll() is None  # losing a job is not a reason to die
        assert stop_all(daemons) == [0, 0, 0]  # nothing can be published after this: count
        assert [p.name for p in outputs(root)] == ["long.png"]
        assert done_counts(daemons) == Counter({"long": 1}) and "job=long done" in other.log


def test_redis_restarted_mid_run_loses_and_doubles_nothing(tmp_path, thin_mat, server):
    server.start()
    root = tmp_path / "share"
    cfg = fleet_config(root, thin_mat, server.url)
    daemons = [Daemon(cfg) for _ in range(3)]
    try:
        names = drop_pairs(root / "inbox", 12)
        wait_until(lambda: len(outputs(root, "*.report.yaml")) >= 3, 120, "the first reports")
        server.kill()  # kill -9; the append-only file (fsync always) has every acknowledged write
        wait_until(lambda: any("cannot reach the queue server" in d.log for d in daemons), 30, "a worker to notice")
        server.start()
        wait_until(lambda: len(outputs(root, "*.report.yaml")) >= 12, 240, "12 reports")
        assert all(d.proc.poll() is None for d in daemons)
        assert stop_all(daemons) == [0, 0, 0]  # nothing can be published after this: count
        assert sorted(p.name for p in outputs(root)) == sorted(f"{n}.png" for n in names)
        assert done_counts(daemons) == Counter({n: 1 for n in names})
    finally:
        for d in daemons:
            d.stop()
        show_logs(daemons)


@contextlib.contextmanager
def connections_to(port: int):
    """A listener on ``port`` that closes every connection at once, as a server that is not
    there yet would refuse it: yields the (live) monotonic times of the connection attempts."""
    attempts: list[float] = []
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    listener.settimeout(0.1)
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # the timeout: look at done again
                continue
            attempts.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield attempts
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_redis_unreachable_at_start_up_the_daemon_waits_and_loses_nothing(tmp_path, thin_mat, server):
    root = tmp_path / "share"
    cfg = fleet_config(root, thin_mat, server.url)  # nothing listens there yet
    names = drop_pairs(root / "inbox", 2)
    with Daemon(cfg) as d:
        d.wait_log("cannot reach the queue server", 60)
        with connections_to(server.port) as attempts:  # still no server: each try is closed at once
            # tries over 1.5 s, after the first failure was logged: the daemon kept trying, and failing
            wait_until(lambda: len(attempts) >= 2 and attempts[-1] - attempts[0] >= 1.5, 30, "two more tries")
        assert d.proc.poll() is None and not outputs(root)
        assert len(list((root / "inbox").iterdir())) == 4  # the jobs wait where they were dropped
        server.start()
        wait_until(lambda: len(outputs(root, "*.report.yaml")) == 2, 60, "both reports")
        assert "answers again" in d.log
        assert sorted(p.name for p in outputs(root)) == sorted(f"{n}.png" for n in names)
        assert d.stop() == 0  # then count
    assert d.log.count("cannot reach the queue server") == 1  # said once, not at every try


class LosesReplies(redis.Redis):
    """A client whose next ``lose`` commands run on the server and then lose their reply, as
    when the server is killed between doing a write and answering it."""

    lose = 0

    def execute_command(self, *args, **kwargs):
        value = super().execute_command(*args, **kwargs)
        if self.lose and args[0] != "SCRIPT LOAD":
            self.lose -= 1
            raise redis.ConnectionError("the reply was lost")
        return value


def queue_with_lost_replies(tmp_path, thin_mat, server):
    server.start()
    cfg = config.load(fleet_config(tmp_path / "share", thin_mat, server.url))
    for p in (cfg.paths.inbox, cfg.paths.state / "work"):
        p.mkdir(parents=True, exist_ok=True)
    client = LosesReplies(port=server.port, decode_responses=True)
    queue = RedisQueue(cfg, "host-a", client)
    assert queue.fleet() is not None  # the consumer group exists: the next command is the one under test
    return cfg, queue, client


def queue_for(cfg, server, consumer: str) -> RedisQueue:
    """Another host's queue on the same server, with a client that loses nothing."""
    return RedisQueue(cfg, consumer, redis.Redis(port=server.port, decode_responses=True))


def test_a_lost_reply_while_queueing_leaves_the_job_to_run_exactly_once(tmp_path, thin_mat, server):
    cfg, queue, client = queue_with_lost_replies(tmp_path, thin_mat, server)
    drop_pairs(cfg.paths.inbox, 1)
    pending = Pending(jobs.discover(cfg.paths.inbox)[0], 0.0)
    client.lose = 1
    assert not queue.may_claim(pending)  # marked on the server, but this host never heard so
    queue._retry_at = 0.0  # the back-off has passed
    assert queue.may_claim(pending)  # the next scan: the mark is ours, so the job is not stuck in the inbox
    assert not queue_for(cfg, server, "host-b").may_claim(pending)  # and nobody else's

    item = WorkItem.claim(pending.candidate, cfg.paths.state / "work", 0.0)
    client.lose = 1
    assert queue.ingest(item, cfg.paths.state / "work") is None  # queued, but the reply was lost
    queue._retry_at = 0.0
    other = queue_for(cfg, server, "host-b")
    taken = other.next(cfg.paths.state / "work", [item.path])  # the lease went stale: offered as an orphan
    assert taken is not None and taken.path == item.path  # its entry was there: one run, not none
    assert other.next(cfg.paths.state / "work", [item.path]) is None  # adopting again queues no second run
    other.complete(item.path)
    assert client.xlen(queue.stream) == 0 and not client.smembers(queue.known_key)  # nothing left behind


def test_a_work_folder_nobody_queued_is_adopted_once(tmp_path, thin_mat, server):
    cfg, queue, _ = queue_with_lost_replies(tmp_path, thin_mat, server)
    drop_pairs(cfg.paths.inbox, 1)
    item = WorkItem.claim(jobs.discover(cfg.paths.inbox)[0], cfg.paths.state / "work", 0.0)
    # the host that claimed it died before queueing it: two hosts find the orphan at once
    b, c = queue_for(cfg, server, "host-b"), queue_for(cfg, server, "host-c")
    b.adopt([item.path])
    c.adopt([item.path])
    assert queue.redis.xlen(queue.stream) == 1


def test_a_server_that_lost_its_data_gets_its_queue_back(tmp_path, thin_mat, server):
    cfg, queue, client = queue_with_lost_replies(tmp_path, thin_mat, server)
    work = cfg.paths.state / "work"
    client.flushall()  # a restart without persistence
    assert queue.next(work) is None  # said, not raised
    drop_pairs(cfg.paths.inbox, 1)
    item = WorkItem.claim(jobs.discover(cfg.paths.inbox)[0], work, 0.0)
    taken = queue.ingest(item, work)  # the group is made again
    assert taken is not None and taken.path == item.path

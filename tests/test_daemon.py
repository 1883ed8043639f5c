"""End-to-end: the real daemon, the real engine, real files, real signals."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import make_image
from tests.daemon_harness import Daemon, archived, outputs, wait_until, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def root(tmp_path):
    return tmp_path / "nstd"


def drop_yaml_job(folder: Path, name: str, extra: dict | None = None, size=(40, 32)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    make_image(folder / f"{name}-photo.png", size, seed=1)
    make_image(folder / f"{name}-art.png", (36, 36), seed=2)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(
        {"content": f"{name}-photo.png", "style": [{"path": f"{name}-art.png", "weight": 1.0}], **(extra or {})}))


def failed_error(root: Path, name: str) -> dict:
    return yaml.safe_load((root / "failed" / name / "error.yaml").read_text())


def test_every_job_form_and_subfolders_come_out_with_report_and_log(root, thin_mat):
    cfg = write_config(root, thin_mat)
    inbox = root / "inbox"
    drop_yaml_job(inbox, "early")  # dropped before start-up
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        drop_yaml_job(inbox / "clients" / "acme", "viayaml", {"output": "viayaml.jpg", "size": 40})
        folder = inbox / "viafolder"
        folder.mkdir(parents=True)
        make_image(folder / "content.png", seed=3)
        make_image(folder / "style.png", seed=4)
        (folder / "job.yaml").write_text("iterations: 3\n")
        make_image(inbox / "pair.content.png", seed=5)
        make_image(inbox / "pair.style.png", seed=6)
        for junk in (".DS_Store", "Thumbs.db", "x.png.part", "._pair.content.png", "~$lock.yaml"):
            (inbox / junk).write_bytes(b"\0junk")
        wait_until(lambda: len(list((root / "outbox").rglob("*.report.yaml"))) == 4, 90, "four reports")
        assert d.stop() == 0
    out = root / "outbox"
    assert (out / "early.png").is_file() and (out / "viafolder.png").is_file() and (out / "pair.png").is_file()
    assert (out / "clients" / "acme" / "viayaml.jpg").is_file() and max(
        Image.open(out / "clients" / "acme" / "viayaml.jpg").size) == 40
    report = yaml.safe_load((out / "viafolder.report.yaml").read_text())
    assert report["status"] == "done" and report["iterations"] == 3  # size 32: the 16 px scale is skipped
    assert len(report["inputs"]["content"]["sha256"]) == 64 and report["weights"]["sha256"]
    assert report["timings"]["queue_wait"] >= 0 and report["timings"]["seconds_per_iteration"] > 0
    assert report["job"]["form"] == "folder" and report["device"] == "CPU"
    assert report["parameters"]["seed"] == report["seed"] == 1
    content_path = Path(report["inputs"]["content"]["path"])  # where the input is now, not a gone work folder
    assert content_path == root / "archive" / "viafolder" / "viafolder" / "content.png" and content_path.is_file()
    log = (out / "pair.log").read_text()
    assert "claimed" in log and "finished" in log and "iteration" in log
    # originals archived, litter left alone, nothing failed, no temp files anywhere
    assert archived(root / "archive" / "pair") == ["pair.content.png", "pair.style.png"]
    assert (root / "archive" / "clients" / "acme" / "viayaml" / "viayaml.yaml").is_file()
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == sorted(
        [".DS_Store", "Thumbs.db", "x.png.part", "._pair.content.png", "~$lock.yaml"])
    assert not list((root / "failed").iterdir())
    assert not [p for p in root.rglob("*") if p.name.endswith((".tmp", ".failing", ".moving"))]


def test_slow_copy_is_not_taken_early(root, thin_mat):
    cfg = write_config(root, thin_mat, watch={"settle_seconds": 1.0})
    inbox = root / "inbox"
    src = make_image(root / "src" / "slow.content.png", (48, 40), seed=8)
    data = src.read_bytes()
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        make_image(inbox / "slow.style.png", seed=9)
        target = inbox / "slow.content.png"
        with open(target, "wb") as fh:  # ~3.5 s of writing, in 8 pieces
            step = len(data) // 8 + 1
            for i in range(0, len(data), step):
                fh.write(data[i:i + step])
                fh.flush()
                time.sleep(0.45)
        wait_until(lambda: (root / "outbox" / "slow.report.yaml").exists(), 60, "the slow job's report")
        d.stop()
    report = yaml.safe_load((root / "outbox" / "slow.report.yaml").read_text())
    import hashlib

    assert report["inputs"]["content"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not list((root / "failed").iterdir())


def test_bad_jobs_fail_with_clear_errors_and_keep_every_input(root, thin_mat):
    cfg = write_config(root, thin_mat)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    (root / "outside.png").write_bytes(make_image(root / "o.png").read_bytes())
    # corrupt image: decodes never; fails after incomplete_timeout
    make_image(inbox / "corrupt-style.png", seed=1)
    (inbox / "corrupt-photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 20)
    (inbox / "corrupt.yaml").write_text("content: corrupt-photo.jpg\nstyle: corrupt-style.png\n")
    drop_yaml_job(inbox, "badyaml")
    (inbox / "badyaml.yaml").write_text("content: badyaml-photo.png\nstyle: [unclosed\n")
    drop_yaml_job(inbox, "unknownkey", {"iteratons": 5})
    drop_yaml_job(inbox, "escape")
    (inbox / "escape.yaml").write_text("content: ../outside.png\nstyle: escape-art.png\n")
    drop_yaml_job(inbox, "toobig", {"size": 5000})
    with Daemon(cfg) as d:
        wait_until(lambda: len([p for p in (root / "failed").glob("*/error.yaml")]) == 5, 60, "five failures")
        d.stop()
    err = failed_error(root, "corrupt")
    assert err["phase"] in ("input", "job") and "corrupt-photo.jpg" in err["message"]
    assert "not valid YAML" in failed_error(root, "badyaml")["message"]
    assert "Did you mean 'iterations'" in failed_error(root, "unknownkey")["message"]
    assert "leaves the job's folder" in failed_error(root, "escape")["message"]
    assert "over the limit of 256" in failed_error(root, "toobig")["message"]
    # every original input is kept beside error.yaml
    assert sorted(failed_error(root, "corrupt")["inputs"]) == ["corrupt-photo.jpg", "corrupt-style.png",
                                                                "corrupt.yaml"]
    for name in ("unknownkey", "toobig"):
        kept = sorted(p.name for p in (root / "failed" / name).iterdir())
        assert kept == sorted([f"{name}-art.png", f"{name}-photo.png", f"{name}.yaml", "error.yaml", "job.log"])
    # a YAML that does not parse cannot say which images are its own: they stay in the inbox
    assert sorted(p.name for p in (root / "failed" / "badyaml").iterdir()) == ["badyaml.yaml", "error.yaml",
                                                                               "job.log"]
    assert sorted(p.name for p in (root / "inbox").iterdir()) == ["badyaml-art.png", "badyaml-photo.png",
                                                                  "escape-photo.png"]  # not named by escape.yaml
    assert not outputs(root)
    # retry puts a failed job back where it came from
    (root / "failed" / "unknownkey" / "unknownkey.yaml").write_text(
        "content: unknownkey-photo.png\nstyle: unknownkey-art.png\niterations: 3\n")
    run = subprocess.run([sys.executable, "-m", "nstd", "retry", "unknownkey", "--config", str(cfg)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (root / "inbox" / "unknownkey.yaml").is_file() and not (root / "failed" / "unknownkey").exists()


# Long enough to be stopped mid-way at its first checkpoint (iteration 50, or 20 in the
# fleet's config) on any machine, short enough that the resumed rest is quick.
LONG = {"solver": "origin", "size": 64, "scales": [1.0], "iterations": 600}


def work_checkpoint(root: Path) -> Path | None:
    found = list((root / "state" / "work").glob("*/checkpoint.npz"))
    return found[0] if found else None


def test_kill9_during_a_job_resumes_from_checkpoint_exactly_once(root, thin_mat):
    cfg = write_config(root, thin_mat)
    drop_yaml_job(root / "inbox", "long", LONG)
    with Daemon(cfg) as d:
        wait_until(lambda: work_checkpoint(root), 60, "a checkpoint")
        d.kill()  # SIGKILL: no chance to clean up
    assert not outputs(root)
    with Daemon(cfg) as d2:
        wait_until(lambda: (root / "outbox" / "long.report.yaml").exists(), 120, "the resumed job's report")
        assert d2.stop() == 0
    assert [p.name for p in outputs(root)] == ["long.png"]
    log = (root / "outbox" / "long.log").read_text()
    assert "resuming from checkpoint at scale 1, iteration" in log and "iteration 0" not in log
    assert yaml.safe_load((root / "outbox" / "long.report.yaml").read_text())["iterations"] == LONG["iterations"]
    assert not list((root / "state" / "work").iterdir()) and not list((root / "failed").iterdir())


def test_sigterm_checkpoints_exits_zero_and_resumes(root, thin_mat):
    cfg = write_config(root, thin_mat)
    drop_yaml_job(root / "inbox", "long", LONG)
    with Daemon(cfg) as d:
        wait_until(lambda: work_checkpoint(root), 60, "a checkpoint")
        t = time.monotonic()
        assert d.stop(signal.SIGTERM, timeout=20) == 0
        assert time.monotonic() - t < 20
        assert "checkpoint saved" in d.log
    work = list((root / "state" / "work").iterdir())
    assert len(work) == 1 and yaml.safe_load((work[0] / "lease.yaml").read_text())["released"] is True
    with Daemon(cfg) as d2:
        wait_until(lambda: (root / "outbox" / "long.report.yaml").exists(), 120, "the resumed job")
        d2.stop()
    assert "resuming from checkpoint" in (root / "outbox" / "long.log").read_text()
    assert [p.name for p in outputs(root)] == ["long.png"]


def test_preview_while_running_then_gone_and_originals_deleted_when_configured(root, thin_mat):
    cfg = write_config(root, thin_mat, paths={"archive": None, "delete_originals": True},
                       output={"preview_every": 5})
    drop_yaml_job(root / "inbox", "watched", LONG)
    drop_yaml_job(root / "inbox", "broken", {"iteratons": 5})
    preview = root / "outbox" / "watched.preview.png"
    with Daemon(cfg) as d:
        wait_until(preview.exists, 60, "a preview while the job runs")
        assert not (root / "outbox" / "watched.png").exists()
        shown = Image.open(preview)
        shown.load()  # a whole image, never half a file
        wait_until(lambda: (root / "outbox" / "watched.report.yaml").exists(), 120, "the job's report")
        wait_until(lambda: (root / "failed" / "broken" / "error.yaml").exists(), 30, "the broken job failed")
        assert d.stop() == 0
    assert not preview.exists()  # the result replaces it
    assert Image.open(root / "outbox" / "watched.png").size == shown.size
    # success: originals deleted, no archive; failure: every input kept anyway
    assert not list((root / "inbox").iterdir()) and not (root / "archive").exists()
    assert sorted(p.name for p in (root / "failed" / "broken").iterdir()) == [
        "broken-art.png", "broken-photo.png", "broken.yaml", "error.yaml", "job.log"]
    assert not list((root / "state" / "work").iterdir())


def test_two_daemons_share_one_inbox_each_job_done_once(root, thin_mat):
    cfg = write_config(root, thin_mat, defaults={"iterations": 30, "coarse_iterations": 10})
    with Daemon(cfg) as a, Daemon(cfg) as b:
        a.wait_log("ready:")
        b.wait_log("ready:")
        for i in range(8):
            drop_yaml_job(root / "inbox", f"job{i}")
        wait_until(lambda: len(list((root / "outbox").glob("*.report.yaml"))) >= 8, 120, "eight reports")
        assert a.stop() == 0 and b.stop() == 0  # stopped: nothing can be published after this, so count
    names = sorted(p.name for p in outputs(root))
    assert names == sorted(f"job{i}.png" for i in range(8))  # no job0-1.png duplicates
    assert not list((root / "failed").iterdir())
    assert not list((root / "state" / "work").iterdir())  # no second claim of a job left half done
    done_by = [re.findall(r"job=(\S+) done: ", d.log) for d in (a, b)]
    assert all(done_by), done_by  # both daemons worked
    assert sorted(done_by[0] + done_by[1]) == [f"job{i}" for i in range(8)]  # each job done once, by one of them


def test_systemd_notify_protocol_on_a_real_socket(root, thin_mat, tmp_path):
    cfg = write_config(root, thin_mat)
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    received: list[str] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                received.append(sock.recv(4096).decode())
            except socket.timeout:
                continue

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    with Daemon(cfg, env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"}) as d:
        wait_until(lambda: any("READY=1" in m for m in received), 60, "READY=1")
        drop_yaml_job(root / "inbox", "n", {"iterations": 40, "scales": [1.0]})
        wait_until(lambda: any("WATCHDOG=1" in m for m in received), 10, "WATCHDOG=1")
        wait_until(lambda: any(m.startswith("STATUS=") and "iteration" in m for m in received), 60,
                   "STATUS= with the job's iteration")
        d.send(signal.SIGHUP)
        wait_until(lambda: any("RELOADING=1" in m for m in received), 10, "RELOADING=1")
        assert d.stop() == 0
    stop.set()
    t.join()
    assert any("STOPPING=1" in m for m in received)
    ready_at = next(i for i, m in enumerate(received) if "READY=1" in m)
    first_progress = next(i for i, m in enumerate(received) if m.startswith("STATUS=") and "iteration" in m)
    stopping_at = next(i for i, m in enumerate(received) if "STOPPING=1" in m)
    assert "engine ready" in d.log.split("ready:")[0]  # weights loaded before READY
    assert ready_at < first_progress < stopping_at  # ready first, work, then stopping


def test_sighup_with_a_broken_config_keeps_running(root, thin_mat):
    cfg = write_config(root, thin_mat)
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        good = cfg.read_text()
        cfg.write_text(good + "\nbogus_key: 1\n")
        d.send(signal.SIGHUP)
        d.wait_log("config reload failed, still running on the previous config")
        cfg.write_text(good.replace("iterations: 4", "iterations: 3"))
        d.send(signal.SIGHUP)
        d.wait_log("config reloaded")
        drop_yaml_job(root / "inbox", "afterhup")
        wait_until(lambda: (root / "outbox" / "afterhup.report.yaml").exists(), 60, "a job after reload")
        assert d.stop() == 0
    assert yaml.safe_load((root / "outbox" / "afterhup.report.yaml").read_text())["parameters"]["iterations"] == 3


def bindfs_available() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "this machine has no /dev/fuse"
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (.ci/run installs it)"
    return None


@contextlib.contextmanager
def inotify_events(folder: Path):
    """Every path native events report under ``folder`` while the block runs (a live list)."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    seen: list[str] = []

    class Record(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            seen.append(os.fsdecode(event.src_path))

    observer = InotifyObserver()
    observer.schedule(Record(), str(folder), recursive=True)
    observer.start()
    try:
        yield seen
    finally:
        observer.stop()
        observer.join(10)


def test_auto_mode_polls_on_a_fuse_mount_where_inotify_sees_nothing(tmp_path, thin_mat):
    reason = bindfs_available()
    if reason:
        pytest.skip(reason)
    backing, view = tmp_path / "backing", tmp_path / "view"
    backing.mkdir()
    view.mkdir()
    mount = subprocess.run(["bindfs", "--no-allow-other", str(backing), str(view)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"bindfs could not mount here: {mount.stderr.strip()}")
    try:
        root = view / "nstd"
        paths = {k: str(root / k) for k in ("inbox", "outbox", "failed", "archive", "state")}
        # control: with native events only, a job written behind the view's back is never seen
        cfg = write_config(tmp_path / "events", thin_mat, paths=paths, watch={"mode": "events", "rescan_seconds": 600})
        with Daemon(cfg) as d:
            d.wait_log("ready:")
            with inotify_events(view) as seen:
                drop_yaml_job(backing / "nstd" / "inbox", "unseen")
                # then a write through the view, outside the inbox: its event comes after any for the job
                (view / "sentinel.txt").write_text("through the view")
                wait_until(lambda: any(p.endswith("sentinel.txt") for p in seen), 20, "the sentinel's event")
            assert not [p for p in seen if "/inbox" in p], seen  # inotify told nobody of the job
            assert d.stop() == 0  # stopped: count
        assert not (backing / "nstd" / "outbox" / "unseen.report.yaml").exists() and "job=unseen" not in d.log
        (backing / "nstd" / "inbox" / "unseen.yaml").unlink()
        # auto: the mount table says FUSE, so the daemon polls and finds the job
        cfg = write_config(tmp_path / "auto", thin_mat, paths=paths, watch={"rescan_seconds": 600})
        with Daemon(cfg) as d:
            d.wait_log("ready:")
            watching = next(line for line in d.log.splitlines() if "INFO watching" in line)
            assert "with polling" in watching and "is on fuse" in watching
            time.sleep(1.0)
            drop_yaml_job(backing / "nstd" / "inbox", "fused")  # written behind the FUSE view's back
            wait_until(lambda: (backing / "nstd" / "outbox" / "fused.report.yaml").exists(), 60,
                       "the job written to the backing folder")
            d.stop()
    finally:
        unmount = "fusermount3" if shutil.which("fusermount3") else "fusermount"
        subprocess.run([unmount, "-u", str(view)], capture_output=True)

"""Hostile input on a shared inbox, against the real daemon on real files.

One daemon run per layout takes every hostile job at once, then a good job; each test
below checks one class of attack. Every class asserts the same three things: nothing from
outside the inbox appears anywhere the daemon writes, no input is lost, and the daemon is
still alive and took the next job.

Layouts: ``same-fs`` (failed/ and archive/ beside state/) and ``other-fs`` (failed/ and
archive/ on a tmpfs, so moves are copies; skipped where the test cannot mount one).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_image
from tests.daemon_harness import Daemon, archived, wait_until, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SECRET_TEXT = "password-hash: $6$only-root-may-read-this$"
LONG = "L" * 232
LONGEST = "M" * 250
SPARSE_BYTES = 1_500_000_000
#: Long: a job still waiting for a part (spair) must stay waiting for the whole run.
INCOMPLETE_TIMEOUT = 600


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def can_mount_tmpfs(target: Path) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def plant_jobs(inbox: Path, outside: Path, sparse_bytes: int) -> dict[str, list[str]]:
    """Every hostile job, and what each leaves in the inbox or failed/ (its inputs)."""
    inbox.mkdir(parents=True)
    secret_png = make_image(outside / "secret.png", (40, 32), seed=99)
    (outside / "secret.yaml").write_text(f"content: a.png\nstyle: b.png\n{SECRET_TEXT}: [\n")
    os.chmod(secret_png, 0o600)

    def pair(name: str, content: bool = True, style: bool = True) -> None:
        if content:
            make_image(inbox / f"{name}.content.png", seed=1)
        if style:
            make_image(inbox / f"{name}.style.png", (36, 36), seed=2)

    # symlinks, in each job form
    pair("lpair", content=False)
    os.symlink(secret_png, inbox / "lpair.content.png")
    pair("spair", style=False)
    os.symlink(secret_png, inbox / "spair.style.png")
    folder = inbox / "lfolder"
    folder.mkdir()
    make_image(folder / "content.png", seed=1)
    os.symlink(secret_png, folder / "style.png")
    yfolder = inbox / "yfolder"
    yfolder.mkdir()
    make_image(yfolder / "content.png", seed=1)
    make_image(yfolder / "style.png", seed=2)
    os.symlink(outside / "secret.yaml", yfolder / "job.yaml")
    make_image(inbox / "lyaml-photo.png", seed=1)
    os.symlink(secret_png, inbox / "lyaml-art.png")
    (inbox / "lyaml.yaml").write_text("content: lyaml-photo.png\nstyle: lyaml-art.png\n")
    os.symlink(outside / "secret.yaml", inbox / "syaml.yaml")
    os.symlink(inbox / "loop.content.png", inbox / "loop.content.png")  # a link to itself
    os.symlink(outside / "missing.png", inbox / "dangling.style.png")
    # amplification: aliases used as values
    make_image(inbox / "bomb-photo.png", seed=1)
    make_image(inbox / "bomb-art.png", seed=2)
    (inbox / "bomb.yaml").write_text(
        "content: bomb-photo.png\nstyle: bomb-art.png\na: &a [x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n")
    # sizes and headers that are certain at once
    pair("huge", content=False)
    with open(inbox / "huge.content.png", "wb") as fh:
        fh.truncate(sparse_bytes)
    pair("pixels", content=False)
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (inbox / "pixels.content.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    pair("empty", content=False)
    (inbox / "empty.content.png").write_bytes(b"")
    # values that are not finite
    make_image(inbox / "nan-photo.png", seed=1)
    make_image(inbox / "nan-art.png", seed=2)
    (inbox / "nan.yaml").write_text("content: nan-photo.png\nstyle: nan-art.png\nstyle_weight: .nan\n")
    # long names: one that fits NAME.report.yaml, and the longest a YAML job can have (250)
    pair(LONG)
    make_image(inbox / "longest-photo.png", seed=1)
    make_image(inbox / "longest-art.png", seed=2)
    (inbox / f"{LONGEST}.yaml").write_text("content: longest-photo.png\nstyle: longest-art.png\n")
    # YAML values that once stopped the scanner or moved the whole inbox, and a folder as a part
    make_image(inbox / "odd-art.png", seed=2)
    make_image(inbox / "odd-photo.png", seed=1)
    make_image(inbox / "keep" / "photo.png", seed=4)  # someone else's folder: no job, never moved
    for name, text in ODD_YAMLS.items():
        (inbox / f"{name}.yaml").write_text(text)
    make_image(inbox / "thin.content.png", (3000, 3), seed=1)
    make_image(inbox / "thin.style.png", seed=2)
    return {"secret_sha": [sha(secret_png)]}


#: Job YAMLs whose values are no file names; each fails alone, and says why.
ODD_YAMLS = {
    "nul": 'content: "c.png\\0"\nstyle: odd-art.png\n',
    "nulstyle": 'content: odd-photo.png\nstyle: [odd-art.png, "x\\0.png"]\n',
    "dot": "content: .\nstyle: odd-art.png\n",
    "blank": 'content: ""\nstyle: odd-art.png\n',
    "subdir": "content: keep\nstyle: odd-art.png\n",
    "deep": "content: " + "/".join(["a"] * 3000) + "/c.png\nstyle: odd-art.png\n",
}


def daemon_writes(root: Path) -> list[Path]:
    """Every regular file the daemon may have written (the inbox itself excluded)."""
    out = []
    for top in ("outbox", "failed", "archive", "state"):
        for p in (root / top).rglob("*"):
            if stat.S_ISREG(os.lstat(p).st_mode):
                out.append(p)
    return out


@pytest.fixture(scope="module", params=["same-fs", "other-fs"])
def hostile(request, tmp_path_factory, thin_mat):
    base = tmp_path_factory.mktemp(f"hostile-{request.param}")
    root, outside = base / "nstd", base / "outside"
    outside.mkdir()
    mounts = []
    if request.param == "other-fs":
        for sub in ("failed", "archive"):
            if not can_mount_tmpfs(root / sub):
                pytest.skip("cannot mount a tmpfs here (needs root): cross-file-system moves not tested")
            mounts.append(root / sub)
    sparse = SPARSE_BYTES if request.param == "same-fs" else 50_000_000
    try:
        facts = plant_jobs(root / "inbox", outside, sparse)
        cfg = write_config(root, thin_mat, limits={"size": 256, "input_bytes": 20_000_000},
                           watch={"incomplete_timeout": INCOMPLETE_TIMEOUT}, output={"umask": "0002"})
        with Daemon(cfg) as d:
            d.wait_log("ready:")
            failed_names = ["lfolder", "yfolder", "lyaml", "bomb", "huge", "pixels", "empty", "nan", "thin",
                            *ODD_YAMLS]
            try:
                wait_until(lambda: all((root / "failed" / n / "error.yaml").is_file() for n in failed_names), 120)
            except AssertionError:
                missing = [n for n in failed_names if not (root / "failed" / n / "error.yaml").is_file()]
                raise AssertionError(f"no failed/ record for {missing}; daemon log:\n{d.log[-6000:]}") from None
            wait_until(lambda: (root / "outbox" / f"{LONG}.png").is_file(), 60, "the long-named job's result")
            wait_until(lambda: len(list((root / "outbox").glob("MMMM*.report.yaml"))) == 1, 60,
                       "the longest-named job's report")
            make_image(root / "inbox" / "next.content.png", seed=5)
            make_image(root / "inbox" / "next.style.png", seed=6)
            wait_until(lambda: (root / "outbox" / "next.report.yaml").is_file(), 60, "the next job")
            status = subprocess.run([sys.executable, "-m", "nstd", "status", "--config", str(cfg)],
                                    capture_output=True, text=True, timeout=60)
            assert d.proc.poll() is None, "the daemon died"
            status_files = [(p.stat().st_size, stat.S_IMODE(p.stat().st_mode))
                            for p in (root / "state" / "status").glob("*.json")]
            hwm = vm_hwm_kib(d.proc.pid)
            assert d.stop() == 0
            log = d.log
        yield {"root": root, "outside": outside, "log": log, "hwm_kib": hwm,
               "status": status.stdout + status.stderr, "status_files": status_files, "layout": request.param, **facts}
    finally:
        for m in mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


def error_of(root: Path, name: str) -> dict:
    return yaml.safe_load((root / "failed" / name / "error.yaml").read_text())


def test_nothing_from_outside_the_inbox_is_read_copied_or_published(hostile):
    root = hostile["root"]
    written = daemon_writes(root)
    assert written, "the daemon wrote nothing at all"
    for p in written:
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() not in hostile["secret_sha"], f"{p} is a copy of the secret"
        assert hostile["secret_sha"][0].encode() not in data, f"{p} names the secret's sha256"
        assert SECRET_TEXT.encode() not in data, f"{p} quotes the secret YAML"
    assert not list((root / "outbox").glob("lpair*")) and not list((root / "outbox").glob("spair*"))


def test_symlinks_fail_or_wait_with_a_reason_and_are_kept_as_links(hostile):
    root = hostile["root"]
    for name, file in (("lfolder", "style.png"), ("yfolder", "job.yaml"), ("lyaml", "lyaml-art.png")):
        err = error_of(root, name)
        assert "symbolic link" in err["message"], err["message"]
        assert (file if name == "lyaml" else name) in err["inputs"]  # a folder job keeps its folder
        kept = root / "failed" / name / (file if name == "lyaml" else f"{name}/{file}")
        assert os.path.islink(kept), f"{kept} should still be the user's link, not a copy"
    # a link is never a job part: the pairs' regular halves stay in the inbox, the links too
    inbox = root / "inbox"
    for p in ("lpair.style.png", "spair.content.png", "syaml.yaml", "loop.content.png", "dangling.style.png"):
        assert os.path.lexists(inbox / p), f"{p} was lost"
    assert "symbolic link" in hostile["status"]
    assert "lpair.style.png: part of no job" in hostile["status"]  # its content is a link: no job, told why


def test_alias_amplification_fails_fast_and_small(hostile):
    root = hostile["root"]
    err = error_of(root, "bomb")
    assert "aliases" in err["message"]
    for p in (root / "failed" / "bomb").rglob("*"):
        if p.is_file():
            assert p.stat().st_size < 20_000, f"{p} is {p.stat().st_size} bytes"
    assert hostile["status_files"] and all(size < 50_000 for size, _ in hostile["status_files"])


def test_sizes_are_checked_before_reading(hostile):
    err = error_of(hostile["root"], "huge")
    assert "over the limit" in err["message"] and "huge.content.png" in err["message"]
    if hostile["layout"] == "same-fs":  # the 1.5 GB sparse file was never read into memory
        assert hostile["hwm_kib"] < 1_200_000, f"daemon peak RSS {hostile['hwm_kib']} KiB"
        assert (hostile["root"] / "failed" / "huge" / "huge.content.png").stat().st_size == SPARSE_BYTES


def logged_at(log: str, text: str) -> datetime.datetime:
    """When the daemon's log first says ``text`` (its lines start with the local time, to the second)."""
    line = next((line for line in log.splitlines() if text in line), None)
    assert line is not None, f"the daemon never logged {text!r}"
    return datetime.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")


def test_certain_image_problems_fail_at_once_not_after_the_incomplete_timeout(hostile):
    root = hostile["root"]
    assert "900,000,000 pixels is over the limit" in error_of(root, "pixels")["message"]
    assert "empty" in error_of(root, "empty")["message"]
    # A problem that only means "still being copied" waits watch.incomplete_timeout with no
    # change before the job fails; a certain one fails in the first pass over the queue.
    ready = logged_at(hostile["log"], "INFO ready:")
    after = {n: (logged_at(hostile["log"], f"job={n} failed;") - ready).total_seconds()
             for n in ("pixels", "empty", "huge", "thin")}
    assert all(0 <= s <= INCOMPLETE_TIMEOUT / 20 for s in after.values()), after  # 30 s; about 5 s here


def test_odd_yaml_values_fail_their_job_alone_and_the_inbox_stays(hostile):
    root = hostile["root"]
    expected = {
        "nul": "'content: 'c.png\\x00'' contains a NUL byte",
        "nulstyle": "'style: 'x\\x00.png'' contains a NUL byte",
        "dot": "'content' must be a file name, got '.'",
        "blank": "'content' must be a file name, got ''",
        "subdir": "'content: keep' is a folder, not an image",
        "deep": "is 6,005 bytes long, and a file name holds at most 255",
    }
    for name, message in expected.items():
        err = error_of(root, name)
        assert message in err["message"], (name, err["message"])
        assert f"{name}.yaml" in err["inputs"] and "inbox" not in err["inputs"] and "keep" not in err["inputs"]
    # the inbox, someone else's folder in it, and the shared style are where they were
    inbox = root / "inbox"
    assert (inbox / "keep" / "photo.png").is_file()
    assert not list((root / "failed").rglob("inbox")) and not list((root / "failed").rglob("keep"))
    assert "keep/photo.png: part of no job" in hostile["status"]
    assert "is gone" not in hostile["log"] and "scanning" not in hostile["log"], "the scan failed"


def test_an_image_too_thin_for_vgg_fails_with_the_size_that_works(hostile):
    err = error_of(hostile["root"], "thin")
    assert err["phase"] == "parameters", err
    assert "thin.content.png: 3000×3 px at size 32 would be 32×1 px, too thin for VGG-19" in err["message"]
    assert "Crop it so its long side is at most 16× its short side" in err["message"]
    assert "Conv2D" not in err["message"] and "traceback" not in err


def test_non_finite_parameters_are_refused_when_read_once(hostile):
    err = error_of(hostile["root"], "nan")
    assert err["phase"] == "parameters" and "finite" in err["message"]
    assert "retry" not in "\n".join(line for line in hostile["log"].splitlines() if "nan" in line)


def test_long_names_publish_every_output(hostile):
    out = hostile["root"] / "outbox"
    for suffix in (".png", ".report.yaml", ".log"):
        assert (out / f"{LONG}{suffix}").is_file(), suffix
    report = yaml.safe_load((out / f"{LONG}.report.yaml").read_text())
    assert report["status"] == "done"
    # 250 characters leave no room for ".report.yaml": every output gets one shortened stem
    longest = sorted(p.name for p in out.glob("MMMM*"))
    assert len(longest) == 3 and len({n.split(".")[0] for n in longest}) == 1, longest
    assert all(len(n.encode()) <= 255 for n in longest)
    assert yaml.safe_load(next(out.glob("MMMM*.report.yaml")).read_text())["job"]["name"] == LONGEST


def test_results_honour_the_umask_so_share_users_can_read_them(hostile):
    root = hostile["root"]
    made = [*(root / "outbox").glob("next*"), root / "failed" / "nan" / "error.yaml",
            root / "failed" / "nan" / "job.log"]
    assert len(made) == 5
    for p in made:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == 0o664, f"{p.name}: {oct(mode)}"
    assert [mode for _, mode in hostile["status_files"]] == [0o664]  # `nstd status` works for share users
    assert stat.S_IMODE((root / "failed" / "nan").stat().st_mode) == 0o775


# --- the daemon's own state: reloads, crashes, a vanished inbox ---------------------------


def test_reload_with_a_bad_typed_config_keeps_the_old_one_running(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = write_config(root, thin_mat)
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        good = cfg.read_text()
        for bad in ({"output": {"umask": 1.5}}, {"service": {"heartbeat_seconds": 0}}):
            write_config(root, thin_mat, **bad)
            d.send(signal.SIGHUP)
            d.wait_log("config reload failed")
            assert d.proc.poll() is None
        cfg.write_text(good)
        make_image(root / "inbox" / "after.content.png", seed=1)
        make_image(root / "inbox" / "after.style.png", seed=2)
        wait_until(lambda: (root / "outbox" / "after.report.yaml").is_file(), 60, "a job after the bad reloads")
        assert d.stop() == 0
    assert stat.S_IMODE((root / "outbox" / "after.png").stat().st_mode) == 0o664  # the old umask still applies


def test_status_after_kill9_says_the_daemon_is_gone(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = write_config(root, thin_mat)
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        wait_until(lambda: list((root / "state" / "status").glob("*.json")), 30, "a status file")
        alive = subprocess.run([sys.executable, "-m", "nstd", "status", "--config", str(cfg)],
                               capture_output=True, text=True, timeout=60)
        assert alive.returncode == 0 and "ready" in alive.stdout, alive.stdout
        d.kill()
    dead = subprocess.run([sys.executable, "-m", "nstd", "status", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert dead.returncode == 3, dead.stdout
    assert "NOT RUNNING" in dead.stdout and "is gone" in dead.stdout
    assert "no live daemon" in dead.stdout


def test_a_deleted_and_recreated_inbox_is_watched_again(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    # a long rescan: only a re-armed watch can see the new job in time
    cfg = write_config(root, thin_mat, watch={"rescan_seconds": 600})
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        inbox = root / "inbox"
        shutil.rmtree(inbox)
        d.wait_log("is gone")
        inbox.mkdir()
        d.wait_log("watching it again")
        make_image(inbox / "back.content.png", seed=1)
        make_image(inbox / "back.style.png", seed=2)
        wait_until(lambda: (root / "outbox" / "back.report.yaml").is_file(), 30, "a job in the recreated inbox")
        assert d.stop() == 0


def test_another_users_folder_fails_once_with_its_reason_and_leaves_nothing_behind(thin_mat):
    import pwd
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the daemon as another user (nobody)")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    base = Path(tempfile.mkdtemp(prefix="nstd-other-user-"))
    try:
        os.chmod(base, 0o755)
        root = base / "nstd"
        weights = base / "thin.mat"
        shutil.copy(thin_mat, weights)
        os.chmod(weights, 0o644)
        cfg = write_config(root, weights)
        os.chmod(cfg, 0o644)
        for sub in ("", "inbox", "outbox", "failed", "archive", "state"):
            (root / sub).mkdir(exist_ok=True)
            os.chown(root / sub, nobody.pw_uid, nobody.pw_gid)
        theirs = root / "inbox" / "theirs"  # made by root, 0755: the daemon's user may not rename it
        theirs.mkdir()
        make_image(theirs / "content.png", seed=1)
        make_image(theirs / "style.png", seed=2)
        before = {p.name: sha(p) for p in theirs.iterdir()}
        prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        with Daemon(cfg, prefix=prefix) as d:
            d.wait_log("ready:")
            wait_until(lambda: (root / "failed" / "theirs" / "error.yaml").is_file(), 60, "the refused job's record")
            make_image(root / "inbox" / "mine.content.png", seed=3)
            make_image(root / "inbox" / "mine.style.png", seed=4)
            for p in (root / "inbox").glob("mine.*"):
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
            # the next job is seen, settles, is claimed and done: scans and claims went on past "theirs"
            wait_until(lambda: (root / "outbox" / "mine.report.yaml").is_file(), 60, "the next job")
            assert d.stop() == 0  # stopped: count
        failed = sorted(p.name for p in (root / "failed").iterdir())
        assert failed == ["theirs"], failed  # it failed once
        assert d.log.count("job=theirs cannot be claimed") == 1
        err = error_of(root, "theirs")
        assert err["phase"] == "claim" and "permission denied" in err["message"]
        assert {p.name: sha(p) for p in theirs.iterdir()} == before  # inputs untouched
        assert not [p for p in (root / "state" / "work").iterdir()], "a failed claim left a work folder"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_disk_full_mid_job_never_kills_the_daemon_and_the_job_finishes_once(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    if not can_mount_tmpfs(root):
        pytest.skip("cannot mount a tmpfs here (needs root): disk-full not tested")
    try:
        shutil.copy(thin_mat, tmp_path / "thin.mat")
        cfg = write_config(tmp_path / "cfg", tmp_path / "thin.mat",
                           paths={k: str(root / k) for k in ("inbox", "outbox", "failed", "archive", "state")},
                           defaults={"size": 48, "iterations": 300, "coarse_iterations": 2, "seed": 1},
                           service={"checkpoint_every": 2, "retries": 5, "retry_backoff": 1})
        with Daemon(cfg) as d:
            d.wait_log("ready:")
            make_image(root / "inbox" / "full.content.png", seed=1)
            make_image(root / "inbox" / "full.style.png", seed=2)
            d.wait_log("iteration")
            filler = root / "filler"
            with open(filler, "wb") as fh:  # every write fails from here: checkpoints, meta, outputs
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
                except OSError:
                    pass
            # two tries that met the full disk, each logged with its retry: the daemon lived through one
            wait_until(lambda: len([line for line in d.log.splitlines() if "No space left" in line and "retry" in line])
                       >= 2 or d.proc.poll() is not None, 60, "two tries on the full disk")
            assert d.proc.poll() is None, f"the daemon died on a full disk:\n{d.log[-3000:]}"
            filler.unlink()
            wait_until(lambda: (root / "outbox" / "full.report.yaml").is_file(), 120, "the job after space came back")
            assert d.proc.poll() is None
            assert d.stop() == 0
        assert sorted(p.name for p in (root / "outbox").glob("full*")) == ["full.log", "full.png", "full.report.yaml"]
        assert archived(root / "archive" / "full") == ["full.content.png", "full.style.png"]
        assert not list((root / "failed").iterdir())
        assert "No space left" in d.log
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


def test_two_yaml_jobs_sharing_a_style_both_run_at_once(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = write_config(root, thin_mat, watch={"incomplete_timeout": 600})
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    make_image(inbox / "shared-art.png", seed=2)
    for name in ("one", "two"):
        make_image(inbox / f"{name}.png", seed=1)
        (inbox / f"{name}.yaml").write_text(f"content: {name}.png\nstyle: shared-art.png\n")
    with Daemon(cfg) as d:
        d.wait_log("ready:")
        wait_until(lambda: all((root / "outbox" / f"{n}.report.yaml").is_file() for n in ("one", "two")), 60,
                   "both jobs that share one style")
        assert d.stop() == 0
    for name in ("one", "two"):  # each archived with its own copy of the style; nothing left in the inbox
        assert archived(root / "archive" / name) == sorted(
            [f"{name}.png", f"{name}.yaml", "shared-art.png"])
    assert not list(inbox.iterdir())


def test_an_init_image_beside_a_yaml_job_is_collected_with_it(tmp_path, thin_mat):
    root = tmp_path / "nstd"
    cfg = write_config(root, thin_mat)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    for name, seed in (("photo.png", 1), ("art.png", 2), ("start.png", 3)):
        make_image(inbox / name, seed=seed)
    (inbox / "warm.yaml").write_text("content: photo.png\nstyle: art.png\ninit: start.png\n")
    with Daemon(cfg) as d:
        wait_until(lambda: (root / "outbox" / "warm.report.yaml").is_file(), 60, "the job with an init image")
        assert d.stop() == 0
    report = yaml.safe_load((root / "outbox" / "warm.report.yaml").read_text())
    assert report["parameters"]["init"] == "start.png"
    assert archived(root / "archive" / "warm") == ["art.png", "photo.png", "start.png",
                                                                            "warm.yaml"]

"""nstd/spool/outbox.py in the process: results, failures and refusals appear whole or not at all.

Every file the outbox writes is made under a hidden temporary name (``.nstd.*``) and
renamed; a reader of the share (a user, a sync client) must never see a partial one, and
no temporary may be left behind, whatever went wrong.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from nstd import config
from nstd.spool import outbox
from nstd.atomic import free_name, write_new
from nstd.errors import ImageError
from tests.daemon_harness import write_config

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n" + b"result" * 100


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "w.mat").write_bytes(b"placeholder: the outbox never reads the weights")
    return config.load(write_config(tmp_path, tmp_path / "w.mat"))


@pytest.fixture
def umask():
    """Set the process umask for one test; restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def work_with_inputs(cfg, name: str = "job", files: tuple[str, ...] = ("c.png", "s.png")) -> Path:
    work = cfg.paths.state / "work" / f"w-{name}"
    (work / "input").mkdir(parents=True)
    for f in files:
        (work / "input" / f).write_bytes(f"bytes of {f}".encode())
    return work


def visible(folder: Path) -> list[str]:
    """What a user listing ``folder`` sees: nothing hidden, nor anything inside a hidden folder."""
    paths = (p.relative_to(folder) for p in folder.rglob("*"))
    return sorted(str(p) for p in paths if not any(part.startswith(".") for part in p.parts))


def temporaries(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob(".nstd.*")]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- publish ---------------------------------------------------------------------------------


def test_publish_writes_the_image_report_and_log_once(cfg):
    work = work_with_inputs(cfg)
    done = outbox.publish(work, cfg, "job", "clients/acme", PNG, ".png", {"status": "done"}, "the log\n")
    folder = cfg.paths.outbox / "clients" / "acme"
    assert visible(folder) == ["job.log", "job.png", "job.report.yaml"]
    assert (folder / "job.png").read_bytes() == PNG and (folder / "job.log").read_text() == "the log\n"
    report = yaml.safe_load((folder / "job.report.yaml").read_text())
    assert report == {"status": "done", "output": str(folder / "job.png")}
    assert done == {"image": str(folder / "job.png"), "report": str(folder / "job.report.yaml"),
                    "log": str(folder / "job.log")}
    assert not temporaries(cfg.paths.outbox)


def test_publish_never_overwrites_a_result_of_the_same_name(cfg):
    outbox.publish(work_with_inputs(cfg, "a"), cfg, "job", ".", PNG, ".png", {"n": 1}, "first")
    outbox.publish(work_with_inputs(cfg, "b"), cfg, "job", ".", b"second image", ".png", {"n": 2}, "second")
    out = cfg.paths.outbox
    assert visible(out) == ["job-1.log", "job-1.png", "job-1.report.yaml", "job.log", "job.png", "job.report.yaml"]
    assert (out / "job.png").read_bytes() == PNG and (out / "job-1.png").read_bytes() == b"second image"
    assert yaml.safe_load((out / "job-1.report.yaml").read_text())["output"] == str(out / "job-1.png")


def test_a_publish_that_fails_half_way_shows_no_partial_file_and_resumes_without_a_duplicate(cfg):
    work = work_with_inputs(cfg)
    with pytest.raises(yaml.representer.RepresenterError):  # the report cannot be written
        outbox.publish(work, cfg, "job", ".", PNG, ".png", {"bad": object()}, "log")
    assert visible(cfg.paths.outbox) == ["job.png"]  # the image is whole; no report, no half of one
    assert not temporaries(cfg.paths.outbox)
    outbox.publish(work, cfg, "job", ".", b"never written", ".png", {"status": "done"}, "log")  # the resumed finish
    assert visible(cfg.paths.outbox) == ["job.log", "job.png", "job.report.yaml"]  # not job-1.png
    assert (cfg.paths.outbox / "job.png").read_bytes() == PNG


def test_the_outbox_shows_nothing_until_a_file_is_whole(tmp_path):
    seen = []

    def write(fh):
        fh.write(b"half")
        fh.flush()
        seen.append(sorted(p.name for p in tmp_path.iterdir()))  # what a reader sees mid-write
        fh.write(b" and the rest")

    assert write_new(tmp_path / "r.png", write) == tmp_path / "r.png"
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(".nstd.") and seen[0][0].endswith(".tmp")
    assert (tmp_path / "r.png").read_bytes() == b"half and the rest" and os.listdir(tmp_path) == ["r.png"]


def test_a_write_that_raises_leaves_neither_the_file_nor_its_temporary(tmp_path):
    def write(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_new(tmp_path / "r.png", write)
    assert os.listdir(tmp_path) == []


def test_published_files_honour_the_umask(cfg, umask):
    umask(0o027)
    outbox.publish(work_with_inputs(cfg), cfg, "job", ".", PNG, ".png", {}, "log")
    assert {p.name: mode(p) for p in cfg.paths.outbox.iterdir()} == {
        "job.png": 0o640, "job.report.yaml": 0o640, "job.log": 0o640}
    umask(0o002)
    outbox.publish(work_with_inputs(cfg, "b"), cfg, "other", ".", PNG, ".png", {}, "log")
    assert mode(cfg.paths.outbox / "other.png") == 0o664


def test_output_file_mode_overrides_the_umask(tmp_path, umask):
    (tmp_path / "w.mat").write_bytes(b"x")
    cfg = config.load(write_config(tmp_path, tmp_path / "w.mat", output={"file_mode": "0604"}))
    umask(0o077)
    outbox.publish(work_with_inputs(cfg), cfg, "job", ".", PNG, ".png", {}, "log")
    assert {mode(p) for p in cfg.paths.outbox.iterdir()} == {0o604}


def test_a_name_too_long_for_its_suffixes_gets_one_short_stable_stem():
    long = "n" * 250
    stem = outbox.output_stem(long)
    assert stem == outbox.output_stem(long) and stem != long
    assert len(f"{stem}-9999.preview.tiff".encode()) <= 255 and stem.startswith("n" * 200)
    assert outbox.output_stem("short") == "short"
    assert outbox.output_stem("é" * 119) != "é" * 119  # 238 bytes: counted in bytes, not characters


# --- fail and refused ----------------------------------------------------------------------


def test_fail_moves_every_input_beside_error_yaml_and_the_log(cfg, umask):
    umask(0o027)
    work = work_with_inputs(cfg, files=("c.png", "s.png", "job.yaml"))
    dest = outbox.fail(work, cfg, "job", "sub", ImageError("c.png: cannot be decoded"), "input", {"size": 64},
                       {"nstd": "1"}, "what happened\n")
    assert dest == cfg.paths.failed / "sub" / "job"
    assert visible(dest) == ["c.png", "error.yaml", "job.log", "job.yaml", "s.png"]
    assert (dest / "c.png").read_bytes() == b"bytes of c.png" and not list((work / "input").iterdir())
    error = yaml.safe_load((dest / "error.yaml").read_text())
    assert {k: error[k] for k in ("job", "phase", "error", "message", "inputs", "inbox_folder", "parameters")} == {
        "job": "job", "phase": "input", "error": "ImageError", "message": "c.png: cannot be decoded",
        "inputs": ["c.png", "job.yaml", "s.png"], "inbox_folder": "sub", "parameters": {"size": 64}}
    assert "traceback" not in error  # a user's error: the message is the whole story
    assert (dest / "job.log").read_text() == "what happened\n"
    assert mode(dest / "error.yaml") == 0o640 and mode(dest / "job.log") == 0o640
    assert not temporaries(cfg.paths.failed)


def test_an_internal_error_keeps_its_traceback_and_a_second_failure_gets_its_own_folder(cfg):
    outbox.fail(work_with_inputs(cfg, "a"), cfg, "job", ".", ValueError("x"), "input", None, {}, "")
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        second = outbox.fail(work_with_inputs(cfg, "b"), cfg, "job", ".", exc, "internal", None, {}, "")
    assert second == cfg.paths.failed / "job-1"
    assert "RuntimeError: a bug" in yaml.safe_load((second / "error.yaml").read_text())["traceback"][-1]
    assert visible(cfg.paths.failed) == sorted(["job", "job-1", *(f"{j}/{f}" for j in ("job", "job-1")
                                                                  for f in ("c.png", "error.yaml", "job.log", "s.png"))])


def test_a_failure_record_that_cannot_be_written_shows_no_failed_job_without_its_error_yaml(cfg):
    work = work_with_inputs(cfg)
    with pytest.raises(yaml.representer.RepresenterError):
        outbox.fail(work, cfg, "job", ".", ValueError("x"), "input", None, {"nstd": object()}, "")
    assert not visible(cfg.paths.failed)  # only the hidden .nstd.*.failing folder, never a bare failed/job


def test_refused_records_why_and_leaves_the_inputs_where_they_are(cfg):
    inbox = cfg.paths.inbox
    inbox.mkdir(parents=True)
    files = [inbox / "theirs.content.png", inbox / "theirs.style.png"]
    for f in files:
        f.write_bytes(b"theirs")
    dest = outbox.refused(cfg, "theirs", ".", PermissionError(13, "Permission denied"), files)
    again = outbox.refused(cfg, "theirs", ".", PermissionError(13, "Permission denied"), files)
    assert (dest, again) == (cfg.paths.failed / "theirs", cfg.paths.failed / "theirs-1")
    error = yaml.safe_load((dest / "error.yaml").read_text())
    assert error["phase"] == "claim" and "Permission denied" in error["message"] and error["inputs"] == []
    assert error["inputs_stay_in"] == [str(f) for f in files]
    assert visible(dest) == ["error.yaml"] and all(f.read_bytes() == b"theirs" for f in files)
    assert not temporaries(cfg.paths.failed)


# --- free names ------------------------------------------------------------------------------


def test_free_name_counts_past_every_taken_name(tmp_path):
    assert free_name(tmp_path / "a.png") == tmp_path / "a.png"
    for taken in ("a.png", "a-1.png", "a-2.png"):
        (tmp_path / taken).write_bytes(b"")
    assert free_name(tmp_path / "a.png") == tmp_path / "a-3.png"
    (tmp_path / "job").mkdir()
    assert free_name(tmp_path / "job") == tmp_path / "job-1"  # folders too
    (tmp_path / "x.report.yaml").write_bytes(b"")
    assert free_name(tmp_path / "x.report.yaml") == tmp_path / "x-1.report.yaml"  # the number before .report.yaml
    (tmp_path / "b.tar.gz").write_bytes(b"")
    assert free_name(tmp_path / "b.tar.gz") == tmp_path / "b.tar-1.gz"
    (tmp_path / "link.png").symlink_to(tmp_path / "nowhere")  # a dangling link still takes its name
    assert free_name(tmp_path / "link.png") == tmp_path / "link-1.png"


def test_a_link_planted_where_a_failed_job_would_go_is_neither_followed_nor_replaced(cfg, tmp_path):
    cfg.paths.failed.mkdir(parents=True)
    (cfg.paths.failed / "job").symlink_to(tmp_path / "elsewhere")  # dangling: "free" to a check that follows it
    dest = outbox.fail(work_with_inputs(cfg), cfg, "job", ".", ValueError("x"), "input", None, {}, "")
    assert dest == cfg.paths.failed / "job-1" and (dest / "error.yaml").is_file()
    assert os.path.islink(cfg.paths.failed / "job") and not (tmp_path / "elsewhere").exists()

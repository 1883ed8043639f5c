"""nstd/spool/jobs.py in the process: what in an inbox is a job, which names may be parts, settling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nstd.spool.jobs import (LINK_REASON, ORPHAN_REASON, JobError, Refused, Settler, discover, inside, is_litter,
                       name_problem)

pytestmark = pytest.mark.unit


def touch(path: Path, data: bytes = b"image bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def scan(inbox: Path) -> tuple[dict[str, object], list[Refused]]:
    refused: list[Refused] = []
    return {f"{c.rel}/{c.name}:{c.form}": c for c in discover(inbox, refused=refused)}, refused


# --- discover: the three forms ----------------------------------------------------------------


def test_a_yaml_job_is_the_yaml_and_the_files_it_names(tmp_path):
    inbox = tmp_path / "inbox"
    sub = inbox / "clients" / "acme"
    touch(sub / "photo.png")
    touch(sub / "art.png")
    touch(sub / "mask.png")
    touch(sub / "unrelated.png")
    touch(sub / "poster.yaml", b"content: photo.png\nstyle: [{path: art.png, weight: 2}]\n"
                            b"regions: [{mask: mask.png}]\nsize: 64\n")
    # (job.yaml would make acme/ a folder job: any other name is a YAML job beside its parts)
    found, refused = scan(inbox)
    assert list(found) == ["clients/acme/poster:yaml"]
    c = found["clients/acme/poster:yaml"]
    assert (c.name, c.rel, c.primary, c.waiting_for, c.broken) == ("poster", Path("clients/acme"), sub / "poster.yaml",
                                                                   None, None)
    assert c.files == [sub / "poster.yaml", sub / "photo.png", sub / "art.png", sub / "mask.png"]
    assert refused == [Refused("clients/acme/unrelated.png", ORPHAN_REASON)]


def test_a_folder_job_is_its_folder(tmp_path):
    inbox = tmp_path / "inbox"
    touch(inbox / "trip" / "content.jpg")
    touch(inbox / "trip" / "style1.png")
    touch(inbox / "trip" / "style2.png")
    found, refused = scan(inbox)
    c = found["./trip:folder"]
    assert (c.primary, c.waiting_for) == (inbox / "trip", None)
    assert sorted(p.name for p in c.files) == ["content.jpg", "style1.png", "style2.png"] and not refused


def test_a_pair_job_is_its_content_and_every_style_of_the_same_name(tmp_path):
    inbox = tmp_path / "inbox"
    for name in ("cat.content.png", "cat.style.png", "cat.style2.jpg", "Cat.Style.b.PNG", "dog.style.png"):
        touch(inbox / name)
    found, refused = scan(inbox)
    assert list(found) == ["./cat:pair"]
    c = found["./cat:pair"]
    assert c.primary == inbox / "cat.content.png" and c.waiting_for is None
    assert sorted(p.name for p in c.files) == ["Cat.Style.b.PNG", "cat.content.png", "cat.style.png", "cat.style2.jpg"]
    assert refused == [Refused("dog.style.png", ORPHAN_REASON)]  # a style without its content is no job


def test_each_form_says_what_it_still_waits_for(tmp_path):
    inbox = tmp_path / "inbox"
    touch(inbox / "y.yaml", b"content: y-photo.png\nstyle: y-art.png\n")
    touch(inbox / "y-photo.png")
    touch(inbox / "p.content.png")
    touch(inbox / "f" / "content.png")
    touch(inbox / "g" / "job.yaml", b"")  # a job.yaml makes a folder a job: it is read when claimed
    found, _ = scan(inbox)
    assert {k: c.waiting_for for k, c in found.items()} == {
        "./y:yaml": "waiting for y-art.png", "./p:pair": "waiting for p.style.* beside p.content.png",
        "./f:folder": "waiting for style*.* in the folder", "./g:folder": None}


def test_a_yaml_that_names_a_folder_is_broken_not_waiting(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "keep").mkdir(parents=True)
    touch(inbox / "art.png")
    touch(inbox / "odd.yaml", b"content: keep\nstyle: art.png\n")
    c = scan(inbox)[0]["./odd:yaml"]
    assert c.broken == "'content: keep' is a folder, not an image; name an image file beside the job."
    assert c.waiting_for is None and inbox / "keep" not in c.files


def test_a_link_is_never_a_part_and_is_reported(tmp_path):
    inbox = tmp_path / "inbox"
    secret = touch(tmp_path / "outside" / "secret.png")
    touch(inbox / "a.content.png")
    (inbox / "a.style.png").symlink_to(secret)
    touch(inbox / "f" / "content.png")
    (inbox / "f" / "style.png").symlink_to(secret)
    found, refused = scan(inbox)
    assert found["./a:pair"].waiting_for == "waiting for a.style.* beside a.content.png"
    assert secret not in found["./a:pair"].files and inbox / "a.style.png" not in found["./a:pair"].files
    assert Refused("a.style.png", LINK_REASON) in refused
    assert [p.name for p in found["./f:folder"].files] == ["content.png"]  # the link moves with the folder,
    assert found["./f:folder"].waiting_for is None  # and the job fails saying so when it is read


def test_litter_is_never_a_job_nor_reported(tmp_path):
    inbox = tmp_path / "inbox"
    litter = [".DS_Store", "Thumbs.db", "desktop.ini", "x.content.png.part", "y.content.png.crdownload",
              "._z.content.png", "~$lock.yaml", ".hidden.yaml", "copy.tmp", ".syncthing.a.png.tmp"]
    for name in litter:
        touch(inbox / name, b"content: a.png\nstyle: b.png\n")
    touch(inbox / "@eaDir" / "content.png")  # a NAS's thumbnail folder, even one that looks like a job
    assert scan(inbox) == ({}, [])
    assert all(is_litter(n) for n in [*litter, "@eaDir", "#recycle", "Icon\r"])
    assert not any(is_litter(n) for n in ("a.png", "job.yaml", "x.content.png", "partial-view.png", "tmp.png"))


def test_discover_on_a_missing_or_non_folder_inbox_finds_nothing(tmp_path):
    assert discover(tmp_path / "absent") == []
    assert discover(touch(tmp_path / "a-file")) == []


# --- names of parts -------------------------------------------------------------------------------


@pytest.mark.parametrize("ref, problem", [
    (123, "must be a file name, got 123"),
    (None, "must be a file name, got None"),
    ("", "must be a file name, got ''"),
    (".", "must be a file name, got '.'"),
    ("..", "must be a file name, got '..'"),
    ("a\0b.png", "contains a NUL byte, which no file name can hold"),
    ("\ud800.png", "holds characters no file name can have (unpaired surrogates)"),
    ("n" * 256, "is 256 bytes long, and a file name holds at most 255"),
    ("é" * 128, "is 256 bytes long, and a file name holds at most 255"),  # bytes, not characters
    ("/etc/passwd", "leaves the job's folder; name a file beside the job (no absolute paths, no '..')"),
    ("../x.png", "leaves the job's folder; name a file beside the job (no absolute paths, no '..')"),
    ("a/../../b.png", "leaves the job's folder; name a file beside the job (no absolute paths, no '..')"),
    ("..\\x.png", "leaves the job's folder; name a file beside the job (no absolute paths, no '..')"),
    ("sub/a.png", "names a file in a sub-folder; name a file beside the job (a plain file name, no '/')"),
    ("sub\\a.png", "names a file in a sub-folder; name a file beside the job (a plain file name, no '/')"),
])
def test_name_problem_says_why_a_value_cannot_name_a_part(ref, problem):
    assert name_problem(ref) == problem


@pytest.mark.parametrize("ref", ["a.png", "n" * 255, "é" * 127, "..a.png", "a..png", "my photo (1).JPG", "\udcff.png"])
def test_name_problem_lets_every_plain_file_name_through(ref):
    assert name_problem(ref) is None


def test_inside_returns_only_a_regular_file_beside_the_job(tmp_path):
    folder = tmp_path / "job"
    photo = touch(folder / "photo.png")
    (folder / "sub").mkdir()
    (folder / "link.png").symlink_to(photo)
    os.mkfifo(folder / "pipe.png")
    assert inside(folder, "photo.png", "content", "j.yaml") == photo
    cases = {
        "link.png": "j.yaml: 'content: link.png' is a symbolic link; nstd never follows links.",
        "sub": "j.yaml: 'content: sub' is a folder, not an image; name an image file beside the job.",
        "pipe.png": "j.yaml: 'content: pipe.png' is not a regular file (a device, pipe or socket)",
        "gone.png": "j.yaml: 'content: gone.png' does not exist in the job's folder.",
        "../photo.png": "j.yaml: 'content: ../photo.png' leaves the job's folder",
        7: "j.yaml: 'content' must be a file name, got 7.",
    }
    for ref, message in cases.items():
        with pytest.raises(JobError) as err:
            inside(folder, ref, "content", "j.yaml")
        assert str(err.value).startswith(message), (ref, str(err.value))


def test_inside_never_echoes_a_huge_or_unprintable_name_whole(tmp_path):
    with pytest.raises(JobError) as err:
        inside(tmp_path, "x" * 100_000, "style", "j.yaml")
    assert len(str(err.value)) < 300 and "100,000 bytes long" in str(err.value)


# --- settling ---------------------------------------------------------------------------------------


def test_a_job_settles_only_after_its_files_stop_changing(tmp_path):
    inbox = tmp_path / "inbox"
    touch(inbox / "a.content.png")
    style = touch(inbox / "a.style.png", b"half")
    settler = Settler()

    def look(now: float):
        c = discover(inbox)[0]
        settler.update([c], now)
        return c

    c = look(100.0)
    assert not settler.settled(c, 2.0, 100.0) and not settler.settled(c, 2.0, 101.9)
    assert settler.settled(c, 2.0, 102.0) and settler.idle(c, 103.0) == 3.0
    with open(style, "ab") as fh:  # the copy goes on
        fh.write(b" and more")
    c = look(103.0)
    assert not settler.settled(c, 2.0, 104.0) and settler.idle(c, 104.0) == 1.0
    c = look(105.0)  # unchanged since 103
    assert settler.settled(c, 2.0, 105.0)


def test_a_new_part_unsettles_a_job_and_a_gone_job_is_forgotten(tmp_path):
    inbox = tmp_path / "inbox"
    touch(inbox / "a.content.png")
    touch(inbox / "a.style.png")
    settler = Settler()
    settler.update(discover(inbox), 0.0)
    touch(inbox / "a.style2.png")  # a second style arrives
    settler.update(discover(inbox), 10.0)
    c = discover(inbox)[0]
    assert settler.idle(c, 10.0) == 0.0 and not settler.settled(c, 1.0, 10.5)
    arrived = settler.seen[c.key].arrived_wall
    settler.update([], 11.0)  # claimed by someone, or deleted
    assert c.key not in settler.seen and settler.idle(c, 20.0) == 0.0 and not settler.settled(c, 1.0, 20.0)
    settler.update([c], 12.0)  # back again: a new arrival
    assert settler.seen[c.key].arrived_wall >= arrived and not settler.settled(c, 1.0, 12.5)


def test_a_link_part_settles_on_the_link_itself_never_its_target(tmp_path):
    inbox = tmp_path / "inbox"
    target = touch(tmp_path / "elsewhere.png", b"x")
    touch(inbox / "y-photo.png")
    (inbox / "y-art.png").symlink_to(target)
    touch(inbox / "y.yaml", b"content: y-photo.png\nstyle: y-art.png\n")
    settler = Settler()
    c = discover(inbox)[0]
    assert inbox / "y-art.png" in c.files  # present, so the job is taken and fails saying it is a link
    settler.update([c], 0.0)
    target.write_bytes(b"the target changes all the time")
    settler.update(discover(inbox), 5.0)
    assert settler.settled(discover(inbox)[0], 5.0, 5.0)

"""Property-based tests: nothing anyone puts in the inbox stops the scan, moves another
job's files or keeps a good job from running.

Each example plants odd files in a fresh inbox beside a good job and a folder that is no
job (``keep/``), then runs the real scanner, claims and runner in the process (the engine
is a test double: pictures are not what is tested here). The property is the same for
every example: no scan or worker turn raises; ``keep/`` and its photo stay where they
are; no planted byte is lost (each file is in the inbox, in failed/ or in the archive);
every odd job either failed with an ``error.yaml`` or is listed as waiting with a reason;
and the good job is done.

CI runs a fixed number of examples with a fixed seed; run more with
``NSTD_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from nstd import config
from nstd.spool import jobs
from nstd.daemon.scanner import Handoff, Scanner
from nstd.daemon.status import StatusBoard
from nstd.daemon.worker import Worker
from tests.conftest import make_image
from tests.daemon_harness import write_config
from tests.test_worker import Clock, Engine, Weights

pytestmark = pytest.mark.unit

EXAMPLES = int(os.environ.get("NSTD_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def png(size=(24, 20), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40 + seed).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


# --- what the inbox gets ------------------------------------------------------------------

#: Values that once stopped or emptied the inbox, and their cousins.
NASTY_REFS = [".", "..", "", "/", "./", "keep", "keep/", "keep/photo.png", "/etc/passwd", "../keep/photo.png",
              "c.png\0", "a\0b.png", "\udcff.png", "\ud800.png", "x" * 300, "/".join(["a"] * 3000) + "/c.png",
              "photo.png", "art.png", "nul.yaml", "\\x.png", "café.png", unicodedata.normalize("NFD", "café.png")]
refs = st.one_of(st.sampled_from(NASTY_REFS), st.text(st.characters(codec=None, exclude_categories=()), max_size=40))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True),
                    refs, st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.one_of(refs, st.integers()), inner, max_size=4), max_leaves=12)
path_values = st.one_of(refs, values, st.lists(refs, max_size=3),
                        st.lists(st.fixed_dictionaries({"path": refs}, optional={"weight": scalars}), max_size=3))
job_dicts = st.fixed_dictionaries(
    {}, optional={"content": path_values, "style": path_values, "init": path_values, "output": path_values,
                  "size": scalars, "iterations": scalars, "regions": st.lists(
                      st.fixed_dictionaries({}, optional={"mask": path_values, "style": path_values}), max_size=2),
                  "preset": scalars, "unknown": values})
RAW_YAML = ["content: &a photo.png\nstyle: *a\n", "[" * 3000, "{" * 200 + "}" * 200, "a: !!python/object:os.system x",
            "content: photo.png\nstyle: art.png\n" + "k: v\n" * 5000, "\t\0\xff", "--- !!binary |\n  AAAA\n"]


def dump_yaml(data) -> bytes:
    return yaml.safe_dump(data, allow_unicode=False).encode()


yaml_bytes = st.one_of(job_dicts.map(dump_yaml), st.sampled_from(RAW_YAML).map(str.encode),
                       st.binary(max_size=200), job_dicts.map(dump_yaml).flatmap(
                           lambda b: st.integers(0, max(0, len(b))).map(lambda n: b[:n])))
name_stems = st.one_of(
    st.sampled_from(["photo", "art", "keep", "-rf", ".hidden", "a\nb", "x" * 240, "nul", "café",
                     unicodedata.normalize("NFD", "café")]),
    st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=30))
raw_names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b
                                                      and b not in (b".", b".."))
image_bytes = st.one_of(st.just(png()), st.integers(0, 300).map(lambda n: png()[:n]),
                        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6).map(
                            lambda flips: _mutate(png(), flips)), st.binary(max_size=64))


def _mutate(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        out[at % len(out)] = value
    return bytes(out)


@st.composite
def inbox_entries(draw) -> list[tuple[bytes, bytes]]:
    """(file name as bytes, content): YAML jobs, pairs, images and odd names."""
    entries = []
    for _ in range(draw(st.integers(1, 5))):
        shape = draw(st.sampled_from(["yaml", "pair", "image", "raw"]))
        stem = os.fsencode(draw(name_stems)) if shape != "raw" else draw(raw_names)
        if shape == "yaml":
            entries.append((stem[:240] + b".yaml", draw(yaml_bytes)))
        elif shape == "pair":
            entries.append((stem[:220] + b".content.png", draw(image_bytes)))
            if draw(st.booleans()):
                entries.append((stem[:220] + b".style.png", draw(image_bytes)))
        elif shape == "image":
            entries.append((stem[:240] + b".png", draw(image_bytes)))
        else:
            entries.append((stem, draw(st.one_of(image_bytes, yaml_bytes))))
    return entries


# --- the property -------------------------------------------------------------------------


def tree(root: Path) -> dict[str, list[str]]:
    """sha256 of every regular file under ``root`` -> where they are."""
    out: dict[str, list[str]] = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), []).append(str(p))
    return out


def run_inbox(base: Path, weights: Path, entries: list[tuple[bytes, bytes]]) -> None:
    """Plant ``entries`` beside a good job and ``keep/``, run scans and the worker, check the property."""
    root = base / "nstd"
    cfg = config.load(write_config(root, weights, watch={"incomplete_timeout": 600}))
    for p in (cfg.paths.inbox, cfg.paths.outbox, cfg.paths.failed, cfg.paths.archive, cfg.paths.state / "work"):
        p.mkdir(parents=True, exist_ok=True)
    inbox = cfg.paths.inbox
    keep = make_image(inbox / "keep" / "photo.png", seed=3)
    keep_sha = hashlib.sha256(keep.read_bytes()).hexdigest()
    planted = []
    for name, data in entries:
        path = os.path.join(os.fsencode(inbox), name)
        if name.lower().startswith((b"good.", b"keep")) or os.path.lexists(path):
            continue
        data += b"\n#" + hashlib.sha256(name).hexdigest().encode()  # every planted file is unique
        with open(path, "wb") as fh:
            fh.write(data)
        planted.append((name, hashlib.sha256(data).hexdigest()))
    make_image(inbox / "good.content.png", seed=1)
    make_image(inbox / "good.style.png", seed=2)
    before = tree(inbox)

    clock = Clock()
    board, handoff = StatusBoard("host"), Handoff()
    scanner = Scanner(lambda: cfg, board, handoff, lambda work: False, clock=clock)
    worker = Worker(lambda: cfg, Engine(), Weights(), board, handoff, scanner, lambda: False, clock=clock)
    for _ in range(3):
        clock.now += 10  # past settle_seconds: what is complete is taken
        scanner.loop()
        while worker.loop(clock.now):
            pass

    assert (cfg.paths.outbox / "good.png").is_file(), "the good job beside the odd ones was not done"
    assert keep.is_file() and hashlib.sha256(keep.read_bytes()).hexdigest() == keep_sha, "keep/ was moved"
    after = {}
    for top in (cfg.paths.inbox, cfg.paths.failed, cfg.paths.archive):
        for sha, where in tree(top).items():
            after.setdefault(sha, []).extend(where)
    lost = [sha for sha in before if sha not in after]
    assert not lost, f"{len(lost)} planted file(s) are nowhere: {[before[s] for s in lost]}"
    for sha, where in after.items():  # whatever went to failed/ went with a record of why
        for w in where:
            path = Path(w)
            if cfg.paths.failed in path.parents:
                ups = path.relative_to(cfg.paths.failed).parents
                assert any((cfg.paths.failed / up / "error.yaml").is_file() for up in ups if up != Path(".")), \
                    f"{path} is in failed/ with no error.yaml"
    waiting = {w["name"]: w["reason"] for w in board.snapshot()["waiting"]}
    for name, _ in planted:  # a job YAML still in the inbox is listed with its reason
        text = os.fsdecode(name)
        if jobs.is_litter(text):  # hidden and sync litter is never a job, nor listed: it stays as it is
            assert os.path.lexists(inbox / text), f"{name!r} is litter, and it was moved"
        elif text.lower().endswith((".yaml", ".yml")) and os.path.lexists(inbox / text):
            stem = text.rsplit(".", 1)[0]
            assert waiting.get(stem) or waiting.get(text), f"{name!r} waits with no reason: {waiting}"


@pytest.mark.slow  # a minute of generated inboxes on two cores
@FUZZ
@given(entries=inbox_entries())
@example(entries=[(b"nul.yaml", b'content: "c.png\\0"\nstyle: art.png\n'), (b"art.png", png())])
@example(entries=[(b"dot.yaml", b"content: .\nstyle: art.png\n"), (b"art.png", png())])
@example(entries=[(b"empty.yaml", b'content: ""\nstyle: art.png\n'), (b"art.png", png())])
@example(entries=[(b"sub.yaml", b"content: keep\nstyle: art.png\n"), (b"art.png", png())])
@example(entries=[(b"list.yaml", b'content: photo.png\nstyle: [art.png, "x\\0"]\n'), (b"photo.png", png()),
                  (b"art.png", png())])
@example(entries=[(b"deep.yaml", ("content: " + "/".join(["a"] * 3000) + "/c.png\nstyle: art.png\n").encode()),
                  (b"art.png", png())])
@example(entries=[(b"sur.yaml", b'content: "\\uDCFF.png"\nstyle: {path: .}\n')])
@example(entries=[(b"out.yaml", b'content: photo.png\nstyle: art.png\noutput: "a\\0.png"\n'), (b"photo.png", png()),
                  (b"art.png", png())])
def test_no_inbox_content_stops_the_scan_or_moves_another_jobs_files(thin_mat, entries):
    with tempfile.TemporaryDirectory(prefix="nstd-fuzz-") as base:
        run_inbox(Path(base), thin_mat, entries)


# --- each case on its own, with its message -------------------------------------------------


@pytest.fixture
def inbox_run(tmp_path, thin_mat):
    """Drop files, run the scanner and worker in the process; returns the config and board."""
    cfg = config.load(write_config(tmp_path, thin_mat, watch={"incomplete_timeout": 600}))
    for p in (cfg.paths.inbox, cfg.paths.outbox, cfg.paths.failed, cfg.paths.archive, cfg.paths.state / "work"):
        p.mkdir(parents=True, exist_ok=True)

    def run():
        clock = Clock()
        board, handoff = StatusBoard("host"), Handoff()
        scanner = Scanner(lambda: cfg, board, handoff, lambda work: False, clock=clock)
        worker = Worker(lambda: cfg, Engine(), Weights(), board, handoff, scanner, lambda: False, clock=clock)
        for _ in range(3):
            clock.now += 10
            scanner.loop()
            while worker.loop(clock.now):
                pass
        return board

    return cfg, run


@pytest.mark.parametrize("content, message", [
    ('"c.png\\0"', "contains a NUL byte"),
    (".", "'content' must be a file name, got '.'"),
    ('""', "'content' must be a file name, got ''"),
    ("keep", "'content: keep' is a folder, not an image"),
    ("keep/photo.png", "names a file in a sub-folder"),
    ("/".join(["a"] * 3000) + "/c.png", "bytes long, and a file name holds at most 255"),
    ("[1, 2]", "'content' must be a file name, got [1, 2]"),
    ("{a: b}", "'content' must be a file name, got {'a': 'b'}"),
    ("12", "'content' must be a file name, got 12"),
])
def test_an_odd_content_value_fails_its_job_alone_and_moves_nothing_else(inbox_run, content, message):
    cfg, run = inbox_run
    inbox = cfg.paths.inbox
    keep = make_image(inbox / "keep" / "photo.png", seed=3)
    make_image(inbox / "art.png", seed=2)
    (inbox / "odd.yaml").write_text(f"content: {content}\nstyle: art.png\n")
    make_image(inbox / "good.content.png", seed=1)
    make_image(inbox / "good.style.png", seed=2)
    run()
    err = yaml.safe_load((cfg.paths.failed / "odd" / "error.yaml").read_text())
    assert message in err["message"], err["message"]
    assert sorted(err["inputs"]) == ["art.png", "odd.yaml"]
    assert keep.is_file() and sorted(p.name for p in inbox.iterdir()) == ["keep"]
    assert (cfg.paths.outbox / "good.png").is_file()


def test_a_nul_byte_in_a_style_list_fails_that_job_alone(inbox_run):
    cfg, run = inbox_run
    make_image(cfg.paths.inbox / "photo.png", seed=1)
    make_image(cfg.paths.inbox / "art.png", seed=2)
    (cfg.paths.inbox / "odd.yaml").write_text('content: photo.png\nstyle: [art.png, "x\\0.png"]\n')
    make_image(cfg.paths.inbox / "good.content.png", seed=1)
    make_image(cfg.paths.inbox / "good.style.png", seed=2)
    run()
    err = yaml.safe_load((cfg.paths.failed / "odd" / "error.yaml").read_text())
    assert "'style: 'x\\x00.png'' contains a NUL byte" in err["message"], err["message"]
    assert sorted(err["inputs"]) == ["art.png", "odd.yaml", "photo.png"]
    assert (cfg.paths.outbox / "good.png").is_file()


@pytest.mark.parametrize("output", ['"a\\0.png"', "sub/a.png", ".hidden.png", "[a.png]"])
def test_an_odd_output_name_fails_when_read_not_when_published(inbox_run, output):
    cfg, run = inbox_run
    make_image(cfg.paths.inbox / "photo.png", seed=1)
    make_image(cfg.paths.inbox / "art.png", seed=2)
    (cfg.paths.inbox / "odd.yaml").write_text(f"content: photo.png\nstyle: art.png\noutput: {output}\n")
    run()
    err = yaml.safe_load((cfg.paths.failed / "odd" / "error.yaml").read_text())
    assert err["phase"] == "job" and "'output' must be a plain file name" in err["message"], err


def test_a_part_that_is_a_folder_is_never_claimed(tmp_path):
    """The claim's own check, whatever discovery says: only a folder job's folder moves."""
    from nstd.spool.workitem import ClaimRefused, WorkItem

    inbox, work = tmp_path / "inbox", tmp_path / "work"
    keep = make_image(inbox / "keep" / "photo.png", seed=3)

    def claim(form: str, parts: list[Path]):
        (inbox / "odd.yaml").write_text("content: keep\n")
        return WorkItem.claim(jobs.Candidate("odd", Path("."), form, parts[0], parts), work, 0.0)

    for parts in ([inbox / "odd.yaml", inbox], [inbox / "odd.yaml", inbox / "."], [inbox / "odd.yaml", tmp_path]):
        with pytest.raises(ClaimRefused, match="is not an entry of the job's folder"):
            claim("yaml", parts)
    with pytest.raises(ClaimRefused, match="is not a folder any more"):
        claim("folder", [inbox / "odd.yaml"])
    with pytest.raises(ClaimRefused, match="is not a regular file any more"):
        claim("yaml", [inbox / "keep"])
    item = claim("yaml", [inbox / "odd.yaml", inbox / "keep"])  # taken without the folder, which stays
    assert sorted(p.name for p in item.inputs.iterdir()) == ["odd.yaml"]
    assert keep.is_file() and sorted(p.name for p in inbox.iterdir()) == ["keep"]


def test_a_scan_is_bounded_and_says_what_it_skipped(tmp_path):
    inbox = tmp_path / "inbox"
    deep = inbox.joinpath(*["d"] * 8)
    make_image(deep / "lost.content.png", seed=1)
    make_image(deep / "lost.style.png", seed=2)
    junk = inbox / "junk"
    junk.mkdir()
    for i in range(1000):
        (junk / f"{i:05}.txt").write_bytes(b"x")
    refused: list[jobs.Refused] = []
    found = jobs.discover(inbox, refused=refused, budget=jobs.ScanBudget(entries=300, depth=4))
    reasons = {r.path: r.reason for r in refused}
    assert "limits.scan_depth" in reasons.get("d/d/d/d/d/", ""), sorted(reasons)[:5]
    assert "limits.scan_entries" in reasons.get("junk/", ""), sorted(reasons)[:5]
    assert sum(1 for r in refused if r.path.startswith("junk/0")) < 300
    assert not found


def test_a_scan_reads_a_bounded_amount_of_yaml_and_remembers_what_it_read(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(5):
        (inbox / f"j{i}.yaml").write_text(f"content: c{i}.png\nstyle: s{i}.png\n" + "#" * 1000 + "\n")
    memo: dict = {}
    unread = []
    for _ in range(3):
        budget = jobs.ScanBudget(yaml_bytes=2500, memo=memo)
        found = jobs.discover(inbox, budget=budget)
        memo = budget.fresh
        unread.append(sorted(c.name for c in found if "limits.scan_bytes" in (c.waiting_for or "")))
        assert budget.bytes_left >= 0
    assert unread == [["j2", "j3", "j4"], ["j4"], []]
    (inbox / "j0.yaml").write_text("content: changed.png\nstyle: s0.png\n")  # changed: read again
    budget = jobs.ScanBudget(yaml_bytes=2500, memo=memo)
    found = {c.name: c for c in jobs.discover(inbox, budget=budget)}
    assert found["j0"].waiting_for == "waiting for changed.png, s0.png"
    assert budget.bytes_left == 2500 - (inbox / "j0.yaml").stat().st_size

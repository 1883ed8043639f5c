"""nstd/untrusted.py in the process: what a path is, reading it as an attacker's file, bounded YAML."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from nstd.untrusted import MAX_YAML_NODES, UnsafeInput, kind, load_yaml, read_regular, short

pytestmark = pytest.mark.unit


@pytest.fixture
def things(tmp_path: Path) -> dict[str, Path]:
    """One of everything an inbox can hold."""
    f = tmp_path / "file.png"
    f.write_bytes(b"picture")
    d = tmp_path / "folder"
    d.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()  # the socket file stays
    for name, target in (("to-file", f), ("to-folder", d), ("dangling", tmp_path / "nowhere")):
        (tmp_path / name).symlink_to(target)
    return {"file": f, "dir": d, "fifo": fifo, "socket": sock_path, "to-file": tmp_path / "to-file",
            "to-folder": tmp_path / "to-folder", "dangling": tmp_path / "dangling", "missing": tmp_path / "absent"}


def test_kind_never_follows_a_link(things):
    assert {name: kind(p) for name, p in things.items()} == {
        "file": "file", "dir": "dir", "fifo": "other", "socket": "other", "to-file": "link", "to-folder": "link",
        "dangling": "link", "missing": "missing"}


def test_kind_of_a_name_no_file_can_have_is_missing_not_an_error(tmp_path):
    assert kind(tmp_path / "a\0b.png") == "missing"


def test_read_regular_reads_a_regular_file_up_to_the_limit(tmp_path):
    f = tmp_path / "exact.png"
    f.write_bytes(b"x" * 100)
    assert read_regular(f, 100) == b"x" * 100
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert read_regular(empty, 0) == b""


def test_read_regular_refuses_a_link_even_to_a_readable_file(things):
    for name in ("to-file", "to-folder", "dangling"):
        with pytest.raises(UnsafeInput, match="is a symbolic link; nstd never follows links"):
            read_regular(things[name], 1000, "image")


@pytest.mark.timeout(10)  # a FIFO opened without O_NONBLOCK would wait here for a writer forever
def test_read_regular_refuses_a_fifo_socket_or_folder_without_waiting(things):
    with pytest.raises(UnsafeInput, match="pipe: is not a regular file; put the image itself in the inbox"):
        read_regular(things["fifo"], 1000, "image")
    with pytest.raises(UnsafeInput, match="folder: is not a regular file"):
        read_regular(things["dir"], 1000)
    with pytest.raises(UnsafeInput, match="sock: cannot open the file"):  # a socket cannot be opened at all
        read_regular(things["socket"], 1000)
    with pytest.raises(UnsafeInput, match="absent: cannot open the file"):
        read_regular(things["missing"], 1000)


def test_read_regular_refuses_one_byte_over_the_limit_and_names_the_limit(tmp_path):
    f = tmp_path / "big.png"
    f.write_bytes(b"x" * 101)
    with pytest.raises(UnsafeInput, match=r"big\.png: 101 bytes is over the limit of 100 bytes \(limits\.input_bytes\)"
                                          r" for this image; make it smaller or raise limits\.input_bytes\."):
        read_regular(f, 100, "image", "limits.input_bytes")


def test_a_sparse_file_of_gigabytes_is_refused_from_its_size_alone(tmp_path):
    f = tmp_path / "huge.png"
    with open(f, "wb") as fh:
        fh.truncate(8 << 30)  # 8 GiB that take no room: reading them would
    with pytest.raises(UnsafeInput, match="8,589,934,592 bytes is over the limit of 1,000 bytes"):
        read_regular(f, 1000)


def test_a_file_that_holds_more_than_its_size_said_is_refused_as_it_grows(tmp_path):
    """/proc files say size 0 and hold more: as a file still being appended to does between
    fstat and read. Only what read() returns can catch it."""
    status = Path("/proc/self/status")
    if kind(status) != "file" or os.stat(status).st_size != 0:
        pytest.skip("no /proc here with files that report size 0")
    assert len(read_regular(status, 1 << 20)) > 100  # under a large limit it reads it all
    with pytest.raises(UnsafeInput, match=r"status: grew past the limit of 100 bytes while being read"):
        read_regular(status, 100)


def test_load_yaml_reads_plain_job_data():
    assert load_yaml("content: a.png\nstyle: [b.png, {path: c.png, weight: 0.5}]\nsize: 512\n") == {
        "content": "a.png", "style": ["b.png", {"path": "c.png", "weight": 0.5}], "size": 512}
    assert load_yaml("anchor: &a 1\n") == {"anchor": 1}  # an anchor nobody uses costs nothing


def test_load_yaml_refuses_any_alias_even_a_single_small_one():
    with pytest.raises(yaml.YAMLError, match=r"YAML aliases \(\*name\) are not allowed in a job file"):
        load_yaml("a: &x small\nb: *x\n")


def test_an_alias_bomb_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(yaml.YAMLError, match="aliases"):
        load_yaml(bomb)  # 9**9 strings if it were expanded


def test_the_node_budget_is_exact():
    # a sequence of n items is n + 1 nodes
    assert len(load_yaml(yaml.safe_dump(list(range(MAX_YAML_NODES - 1))))) == MAX_YAML_NODES - 1
    with pytest.raises(yaml.YAMLError, match=f"more than {MAX_YAML_NODES} YAML nodes"):
        load_yaml(yaml.safe_dump(list(range(MAX_YAML_NODES))))


def test_load_yaml_builds_no_python_objects():
    with pytest.raises(yaml.constructor.ConstructorError):
        load_yaml("!!python/object/apply:os.system ['true']\n")


def test_short_keeps_short_values_and_cuts_long_ones_to_the_limit():
    assert short("a.png") == "'a.png'" and short(12) == "12"
    text = "x" * 1_000_000
    cut = short(text, 40)
    assert cut == "'" + "x" * 39 + "… (1,000,002 characters)"
    assert short("y" * 78) == "'" + "y" * 78 + "'"  # exactly the limit (80 with its quotes): whole
    assert short("y" * 79).endswith("… (81 characters)")

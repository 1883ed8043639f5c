"""Issue 2's acceptance: `nstd stylize` on the origin's images with a random MatConvNet file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from PIL import Image

from tests.conftest import make_image, shared_seed
from tests.reference import load_rgb, origin_loss
from tests.weightfiles import random_network, write_mat

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def full_mat(tmp_path_factory):
    """Full-width VGG-19 (real channel counts) with random weights, MatConvNet layout."""
    net = random_network(seed=11)
    return net, write_mat(tmp_path_factory.mktemp("w") / "W.mat", net)


def stylize(cwd, seed_dir, weights, out: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nstd", "stylize", str(seed_dir / "japanese_garden.jpg"),
           str(seed_dir / "picasso_selfportrait.jpg"), "-o", out, "--weights", str(weights), "--size", "128",
           "--iterations", "50", "--seed", "1"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.real_weights  # the shared seed pictures
@pytest.mark.slow
def test_stylize_origin_pair_lowers_the_origin_loss_tenfold_reproducibly(tmp_path, full_mat):
    seed_dir = shared_seed()
    net, weights = full_mat
    first = stylize(tmp_path, seed_dir, weights, "out.png")
    assert first.returncode == 0, first.stderr
    assert "iteration 50/50" in first.stderr  # progress was shown
    out = tmp_path / "out.png"
    assert max(Image.open(out).size) == 128
    report = yaml.safe_load((tmp_path / "out.report.yaml").read_text())
    assert report["status"] == "done" and report["seed"] == 1 and report["weights"]["format"] == "matconvnet"
    assert report["losses"]["end"]["loss"] < report["losses"]["start"]["loss"]

    size = Image.open(out).size
    content = load_rgb(seed_dir / "japanese_garden.jpg", size)
    style = load_rgb(seed_dir / "picasso_selfportrait.jpg", size)
    loss_out = origin_loss(net, load_rgb(out), content, style)
    loss_content = origin_loss(net, content, content, style)
    assert loss_out * 10 <= loss_content, (loss_out, loss_content)

    second = stylize(tmp_path, seed_dir, weights, "again.png")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "again.png").read_bytes() == out.read_bytes()


def test_stylize_rejects_bad_input_without_traceback(tmp_path, thin_mat):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = subprocess.run([sys.executable, "-m", "nstd", "stylize", str(tmp_path / "broken.jpg"),
                          str(tmp_path / "broken.jpg"), "-o", str(tmp_path / "o.png"), "--weights", str(thin_mat)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "broken.jpg" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "o.png").exists()
    run = subprocess.run([sys.executable, "-m", "nstd", "stylize", "a.png", "b.png", "-o", str(tmp_path / "o.png"),
                          "--set", "iteratons=3"], capture_output=True, text=True)
    assert run.returncode == 2 and "Did you mean 'iterations'" in run.stderr


def test_stylize_refuses_to_overwrite_before_any_work(tmp_path, thin_mat):
    content = make_image(tmp_path / "c.png", seed=1)
    style = make_image(tmp_path / "s.png", seed=2)
    (tmp_path / "taken.png").write_bytes(b"keep me")

    def run(out: str, *extra: str):
        return subprocess.run([sys.executable, "-m", "nstd", "stylize", str(content), str(style), "-o", out,
                               "--weights", str(thin_mat), "--size", "32", "--iterations", "2", *extra],
                              capture_output=True, text=True, timeout=300)

    taken = run(str(tmp_path / "taken.png"))
    assert taken.returncode == 2 and "already exists" in taken.stderr and "--force" in taken.stderr
    assert (tmp_path / "taken.png").read_bytes() == b"keep me" and "weights" not in taken.stderr
    own = run(str(content), "--force")
    assert own.returncode == 2 and "is one of the inputs" in own.stderr
    nowhere = run(str(tmp_path / "no" / "such" / "folder" / "o.png"))
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr
    forced = run(str(tmp_path / "taken.png"), "--force")
    assert forced.returncode == 0, forced.stderr
    # TensorFlow's start-up chatter is filtered: no absl notice, info lines or CPU-only cuInit "error"
    for noise in ("InitializeLog", "I0000", "oneDNN custom operations", "cuInit"):
        assert noise not in forced.stderr, forced.stderr
    assert (tmp_path / "taken.png").read_bytes() != b"keep me"


def test_startup_filter_drops_chatter_and_keeps_real_errors():
    from nstd.engine import backend

    cpu_only = {"nvidia": False}
    assert backend.chatter("I0000 00:00:1.2 1 port.cc:153] oneDNN custom operations are on.", **cpu_only)
    assert backend.chatter("E0000 00:00:1.2 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
                           **cpu_only)
    assert not backend.chatter("E0000 00:00:1.2 1 some_op.cc:9] Out of memory while allocating", **cpu_only)
    assert not backend.chatter("W0000 00:00:1.2 1 x.cc:1] something worth reading", **cpu_only)
    # a GPU machine: a cuInit failure is real
    assert not backend.chatter("E0000 00:00:1.2 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
                               nvidia=True)

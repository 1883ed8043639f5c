"""Shared fixtures: random weight files written at test time, tiny images, shared data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# This project's own machines keep the real VGG-19 file in ../shared/weights beside the
# checkout. The library only looks where a user would put it, so point it there here, before
# anything imports nstd; a fresh clone has no ../shared and uses the Keras cache as users do.
_SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"
if _SHARED_WEIGHTS.is_dir():
    os.environ.setdefault("NSTD_WEIGHTS_DIR", str(_SHARED_WEIGHTS))

import numpy as np
import pytest
from PIL import Image

from tests.weightfiles import random_network, write_mat

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What `auto` measures is remembered under the user's cache folder; tests (and the daemons
# they start) keep theirs in a folder of their own, so every run measures as a fresh machine does.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="nstd-test-cache-")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def thin_net():
    """A VGG-19-shaped network at 1/8 width: same structure, fast on 2 cores."""
    return random_network(seed=7, width_scale=0.125)


@pytest.fixture(scope="session")
def thin_mat(tmp_path_factory, thin_net) -> Path:
    return write_mat(tmp_path_factory.mktemp("weights") / "thin.mat", thin_net)


@pytest.fixture(scope="session")
def engine(thin_mat):
    from nstd.engine import Engine, load_weights

    return Engine(load_weights(thin_mat))


def make_image(path: Path, size=(48, 36), seed: int = 0, mode: str = "RGB") -> Path:
    """A smooth random picture (gradients + blobs), decodable by anything."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    chans = [np.sin(xx * rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(yy * rng.uniform(3, 9)) for _ in range(3)]
    rgb = ((np.stack(chans, -1) * 0.5 + 0.5) * 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture
def images(tmp_path):
    return make_image(tmp_path / "content.png", seed=1), make_image(tmp_path / "style.png", (40, 40), seed=2)


def shared_seed() -> Path:
    seed = SHARED / "seed"
    if not (seed / "japanese_garden.jpg").is_file():
        pytest.skip(f"shared data not found at {seed}")
    return seed


REAL_WEIGHTS = SHARED.parent / "weights" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture(scope="session")
def real_weights_path() -> Path:
    """The real ImageNet VGG-19 file, for tests that judge pictures or need its scale."""
    if not REAL_WEIGHTS.is_file():
        pytest.skip(f"real VGG-19 weights not found at {REAL_WEIGHTS}")
    return REAL_WEIGHTS


@pytest.fixture(scope="session")
def real_engine(real_weights_path):
    """The engine on the real ImageNet VGG-19 weights, for tests that judge pictures."""
    from nstd.engine import Engine, load_weights

    return Engine(load_weights(real_weights_path))


@pytest.fixture(scope="session")
def real_pair():
    """tubingen.jpg + starry_night.jpg, loaded."""
    from nstd.images import load_image

    content, style = SHARED / "images" / "tubingen.jpg", SHARED / "images" / "starry_night.jpg"
    if not (content.is_file() and style.is_file()):
        pytest.skip(f"shared images not found under {SHARED}")
    return load_image(content), load_image(style)


def stopped_checkpoint(engine, content, style, params, after: int, match: str | None = None) -> bytes:
    """Run a job, ask it to stop at the ``after``-th check, and return the checkpoint it left."""
    from nstd.engine import Hooks, Interrupted, save_checkpoint

    saved, calls = [], {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after

    with pytest.raises(Interrupted, match=match):
        engine.stylize(content, [(style, 1.0)], params,
                       hooks=Hooks(checkpoint=lambda s: saved.append(save_checkpoint(s)), should_stop=stop))
    return saved[-1]

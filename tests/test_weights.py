"""Every weights format loads to the same network, and bad files fail clearly."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from nstd.engine.weights import KERAS_NOTOP_NAME, load_weights, save_npz
from nstd.errors import WeightsError
from tests.weightfiles import random_network, write_h5, write_mat


@pytest.fixture(scope="module")
def files(tmp_path_factory, thin_net):
    d = tmp_path_factory.mktemp("formats")
    paths = {
        "mat": write_mat(d / "current.mat", thin_net),
        "mat-older": write_mat(d / "older.mat", thin_net, older=True),
        "h5": write_h5(d / "notop.h5", thin_net),
        "h5-model": write_h5(d / "model.h5", thin_net, whole_model=True),
    }
    save_npz(load_weights(paths["mat"]), d / "conv.npz")
    save_npz(load_weights(paths["mat"]), d / "conv16.npz", fp16=True)
    paths["npz"], paths["npz16"] = d / "conv.npz", d / "conv16.npz"
    return paths


def test_all_formats_give_identical_features(files, thin_net):
    from nstd.engine import Engine
    from tests.reference import activations

    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    layers = ("conv1_1", "conv3_1", "conv5_1")
    feats = {}
    for name in ("mat", "mat-older", "h5", "h5-model", "npz"):
        feats[name] = Engine(load_weights(files[name])).features(rgb, layers, "avg")
    for name, f in feats.items():
        for layer in layers:
            assert np.array_equal(f[layer], feats["mat"][layer]), (name, layer)
    # and they are the right features: an independent numpy VGG agrees
    ref = activations(thin_net, rgb)
    for layer in layers:
        np.testing.assert_allclose(feats["mat"][layer][0], ref[layer], rtol=1e-3, atol=1e-3)
    half = Engine(load_weights(files["npz16"])).features(rgb, layers, "avg")
    np.testing.assert_allclose(half["conv5_1"], feats["mat"]["conv5_1"], rtol=0.05, atol=0.05)


def test_keras_file_is_flipped_to_rgb(files, thin_net):
    """Keras stores the first layer for BGR input; we must feed RGB to it correctly."""
    w = load_weights(files["h5"])
    assert np.array_equal(w.kernels["conv1_1"], thin_net["conv1_1"][0])
    with h5py.File(files["h5"]) as f:
        stored = f["block1_conv1/block1_conv1/kernel:0"][()]
    assert np.array_equal(stored[:, :, ::-1, :], thin_net["conv1_1"][0])


def test_mat_mean_pixel_comes_from_the_file(tmp_path, thin_net):
    mean = (100.0, 110.0, 120.0)
    for older in (False, True):
        w = load_weights(write_mat(tmp_path / f"m{older}.mat", thin_net, older=older, mean=mean))
        np.testing.assert_allclose(w.mean_rgb, mean, rtol=1e-6)


@pytest.mark.parametrize("problem", ["missing", "shape", "dtype", "nan"])
def test_bad_npz_is_rejected_with_layer_and_file(tmp_path, files, problem):
    with np.load(files["npz"]) as z:
        arrays = {k: z[k] for k in z.files}
    if problem == "missing":
        del arrays["conv3_4/kernel"]
    elif problem == "shape":
        arrays["conv3_4/kernel"] = arrays["conv3_4/kernel"][:, :, :5, :]
    elif problem == "dtype":
        arrays["conv3_4/kernel"] = arrays["conv3_4/kernel"].astype(np.int32)
    else:
        arrays["conv3_4/kernel"][0, 0, 0, 0] = np.nan
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(WeightsError) as err:
        load_weights(bad)
    assert "bad.npz" in str(err.value) and "conv3_4" in str(err.value)


def test_vgg16_like_h5_names_the_missing_layer(tmp_path, thin_net):
    path = write_h5(tmp_path / "vgg16.h5", thin_net)
    with h5py.File(path, "a") as f:
        del f["block3_conv4"]
    with pytest.raises(WeightsError, match="block3_conv4"):
        load_weights(path)


@pytest.mark.parametrize("name", ["mat", "h5"])
def test_truncated_file_is_a_clear_error(tmp_path, files, name):
    data = files[name].read_bytes()
    cut = tmp_path / f"cut.{name}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as err:
        load_weights(cut)
    assert str(cut) in str(err.value) and ("truncated" in str(err.value) or "missing" in str(err.value))


def test_non_weight_file_and_missing_path(tmp_path):
    page = tmp_path / "vgg.mat"
    page.write_text("<html>404 Not Found</html>")
    with pytest.raises(WeightsError, match="not a weights file"):
        load_weights(page)
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nope.mat")


def test_imagenet_uses_keras_cache_and_explains_when_missing(tmp_path, monkeypatch, thin_net):
    # NSTD_WEIGHTS_DIR unset, an empty Keras cache, no download: the library must not find the
    # file anywhere else (not even in ../shared/weights beside this checkout, where it may be).
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("NSTD_IMAGENET_URL", "http://127.0.0.1:9/unreachable.h5")
    monkeypatch.delenv("NSTD_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError) as err:
        load_weights("imagenet")
    msg = str(err.value)
    cached = tmp_path / "keras" / "models" / KERAS_NOTOP_NAME
    assert KERAS_NOTOP_NAME in msg and str(cached) in msg and "NSTD_WEIGHTS_DIR" in msg and ".mat" in msg
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_h5(cached, thin_net)
    w = load_weights("imagenet")
    assert w.format == "keras-h5" and np.array_equal(w.kernels["conv2_1"], thin_net["conv2_1"][0])


@pytest.mark.e2e
def test_cli_convert_and_info(tmp_path, files):
    out = tmp_path / "w16.npz"
    run = subprocess.run([sys.executable, "-m", "nstd", "weights", "convert", str(files["h5"]), str(out), "--fp16"],
                         capture_output=True, text=True, check=True)
    assert "float16" in run.stdout and out.is_file()
    info = subprocess.run([sys.executable, "-m", "nstd", "weights", "info", str(out)], capture_output=True,
                          text=True, check=True).stdout
    assert "format:   npz" in info and "conv5_4" in info and "sha256" in info
    bad = subprocess.run([sys.executable, "-m", "nstd", "weights", "info", str(tmp_path / "none.mat")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "none.mat" in bad.stderr and "Traceback" not in bad.stderr


def test_full_width_network_is_recognised(tmp_path):
    w = load_weights(write_mat(tmp_path / "full.mat", random_network(0)))
    assert w.standard_widths and w.kernels["conv5_4"].shape == (3, 3, 512, 512)


def test_imagenet_finds_a_local_copy_before_downloading(tmp_path, monkeypatch, thin_net):
    import nstd.engine.weights as weights_mod

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("NSTD_IMAGENET_URL", "http://127.0.0.1:9/unreachable.h5")
    monkeypatch.setenv("NSTD_WEIGHTS_DIR", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "keras" / "models").mkdir(parents=True)
    write_h5(tmp_path / "keras" / "models" / KERAS_NOTOP_NAME, thin_net)
    assert weights_mod.imagenet_path() == tmp_path / "keras" / "models" / KERAS_NOTOP_NAME  # dir set, file not in it
    write_h5(tmp_path / "mine" / KERAS_NOTOP_NAME, thin_net)
    assert weights_mod.imagenet_path() == tmp_path / "mine" / KERAS_NOTOP_NAME  # the user's own folder first
    monkeypatch.setenv("NSTD_WEIGHTS_DIR", str(tmp_path / "missing-folder"))
    assert weights_mod.imagenet_path() == tmp_path / "keras" / "models" / KERAS_NOTOP_NAME

"""Small deterministic random VGG-19 weight files in every layout users have.

Written at test time (nothing binary is committed). The same random network is
written as MatConvNet .mat (current and older field order), Keras no-top .h5 and a
Keras whole-model .h5, each with its own conventions (kernel orientation, BGR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nstd.engine.weights import BLOCKS, CONV_LAYERS, IMAGENET_MEAN_RGB


def random_network(seed: int = 0, width_scale: float = 1.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Canonical (RGB, [h, w, in, out]) kernels with He init, so activations stay O(1)."""
    rng = np.random.default_rng(seed)
    net, cin = {}, 3
    for b, n, width in BLOCKS:
        cout = max(4, int(width * width_scale))
        for i in range(1, n + 1):
            std = np.sqrt(2.0 / (9 * cin))
            k = rng.normal(0, std, (3, 3, cin, cout)).astype(np.float32)
            bias = rng.normal(0, 0.01, (cout,)).astype(np.float32)
            net[f"conv{b}_{i}"] = (k, bias)
            cin = cout
    return net


def _mat_layers(net, older: bool) -> np.ndarray:
    """MatConvNet's ``layers`` cell: conv/relu/pool structs; fields in the file's order."""
    fields = ["weights", "pad", "type", "name", "stride"] if older else \
        ["name", "type", "weights", "size", "pad", "stride", "precious"]
    dtype = [(f, object) for f in fields]
    entries = []

    def struct(**values) -> np.ndarray:
        s = np.zeros((1, 1), dtype=dtype)
        for f in fields:
            s[0, 0][f] = values.get(f, np.zeros((0, 0)))
        return s

    for name in CONV_LAYERS:
        k, b = net[name]
        w = np.empty((1, 2), dtype=object)
        w[0, 0] = np.transpose(k, (1, 0, 2, 3))  # stored [width, height, in, out]
        w[0, 1] = b.reshape(-1, 1)
        entries.append(struct(name=name, type="conv", weights=w, size=np.array(k.shape, float),
                              pad=np.ones((1, 4)), stride=np.ones((1, 2))))
        entries.append(struct(name="relu" + name[4:], type="relu"))
        if name.endswith(("1_2", "2_2", "3_4", "4_4", "5_4")):
            entries.append(struct(name=f"pool{name[4]}", type="pool"))
    # a small stand-in for the fully connected layers the loader must skip
    w = np.empty((1, 2), dtype=object)
    w[0, 0] = np.zeros((1, 1, 8, 4), np.float32)
    w[0, 1] = np.zeros((4, 1), np.float32)
    entries.append(struct(name="fc6", type="conv", weights=w))
    cell = np.empty((1, len(entries)), dtype=object)
    for i, e in enumerate(entries):
        cell[0, i] = e
    return cell


def write_mat(path: Path, net, older: bool = False, mean=IMAGENET_MEAN_RGB) -> Path:
    import scipy.io

    if older:
        avg = np.broadcast_to(np.asarray(mean, np.float32), (8, 8, 3)).copy()
        norm = {"averageImage": avg, "keepAspect": 1}
        scipy.io.savemat(path, {"layers": _mat_layers(net, True), "normalization": norm}, do_compression=False)
    else:
        norm = {"averageImage": np.asarray(mean, np.float32).reshape(1, 1, 3), "imageSize": np.array([224, 224, 3])}
        meta = {"normalization": norm, "classes": {"name": np.array(["a", "b"], dtype=object)}}
        scipy.io.savemat(path, {"layers": _mat_layers(net, False), "meta": meta}, do_compression=False)
    return Path(path)


def write_h5(path: Path, net, whole_model: bool = False) -> Path:
    """Keras legacy h5 (what keras.applications downloads), BGR first layer."""
    import h5py

    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if whole_model else f
        if whole_model:
            f.attrs["model_config"] = '{"class_name": "Functional"}'
        names = []
        for name in CONV_LAYERS:
            k, b = net[name]
            if name == "conv1_1":
                k = k[:, :, ::-1, :]  # Caffe-converted weights expect BGR
            layer = f"block{name[4]}_conv{name[6]}"
            names.append(layer.encode())
            g = root.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/kernel:0".encode(), f"{layer}/bias:0".encode()]
            g.create_dataset(f"{layer}/kernel:0", data=k)
            g.create_dataset(f"{layer}/bias:0", data=b)
        for pool in range(1, 6):
            names.append(f"block{pool}_pool".encode())
            root.create_group(f"block{pool}_pool").attrs["weight_names"] = []
        root.attrs["layer_names"] = names
    return Path(path)

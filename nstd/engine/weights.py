"""VGG-19 weights from the files users actually have, in one canonical form.

Canonical form: for each conv layer ``convB_I`` a kernel ``[h, w, in, out]`` and a
bias ``[out]`` (float32), plus ``mean_rgb``; the network takes **RGB** 0–255 minus
``mean_rgb``. Every loader converts to this form and goes through one validator,
so the MatConvNet ``.mat``, Keras ``.h5`` and our ``.npz`` give identical features.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nstd.atomic import write_atomic
from nstd.errors import WeightsError

#: VGG-19's conv layers: block → number of convs, and the standard widths.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
CONV_LAYERS = tuple(f"conv{b}_{i}" for b, n, _ in BLOCKS for i in range(1, n + 1))
STANDARD_WIDTH = {f"conv{b}_{i}": w for b, n, w in BLOCKS for i in range(1, n + 1)}
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)

KERAS_NOTOP_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_NOTOP_MD5 = "253f8cb515780f3b799900260a226db6"
KERAS_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_NOTOP_NAME
)
NPZ_FORMAT_VERSION = 1


@dataclass
class VGGWeights:
    """Conv weights of VGG-19 in canonical (RGB, [h, w, in, out]) form."""

    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    mean_rgb: np.ndarray
    source: str = ""
    format: str = ""
    sha256: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def standard_widths(self) -> bool:
        return all(self.kernels[n].shape[3] == STANDARD_WIDTH[n] for n in CONV_LAYERS)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_format(path: Path) -> str:
    """Format from the file's magic bytes, not its name: users rename files."""
    with open(path, "rb") as fh:
        head = fh.read(128)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras-h5"
    if head.startswith(b"MATLAB 7.3"):
        return "mat-v7.3"
    if head.startswith(b"MATLAB 5.0 MAT-file") or head[:116].lstrip().startswith(b"MATLAB"):
        return "matconvnet"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    return "unknown"


def load_weights(spec: str | os.PathLike, *, hash_file: bool = True) -> VGGWeights:
    """Load ``spec``: ``imagenet`` (Keras cache / download) or a path to .mat/.h5/.npz."""
    if str(spec) == "imagenet":
        return load_weights(imagenet_path(), hash_file=hash_file)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found. Give the path to "
            "imagenet-vgg-verydeep-19.mat, a Keras VGG-19 .h5, or an .npz made by "
            "'nstd weights convert'."
        )
    fmt = detect_format(path)
    loaders = {"matconvnet": _load_mat, "keras-h5": _load_h5, "npz": _load_npz}
    if fmt == "mat-v7.3":
        raise WeightsError(
            f"{path}: a MATLAB v7.3 (HDF5) .mat file; MatConvNet's VGG-19 is a v5 .mat. "
            "Re-save it in MATLAB with save(..., '-v7') or use the original download."
        )
    if fmt not in loaders:
        raise WeightsError(
            f"{path}: not a weights file nstd knows (expected a MatConvNet .mat, a Keras "
            ".h5 or an nstd .npz; the first bytes match none of them). Is it truncated or "
            "an HTML error page saved by a failed download?"
        )
    try:
        weights = loaders[fmt](path)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure is a bad file
        raise WeightsError(
            f"{path}: cannot read this {fmt} file ({type(exc).__name__}: {exc}). It is "
            "probably truncated or damaged; download or copy it again."
        ) from exc
    weights.source, weights.format = str(path), fmt
    validate(weights, path)
    if hash_file:
        weights.sha256 = file_sha256(path)
    return weights


def imagenet_path() -> Path:
    """The Keras no-top VGG-19 file: a local copy if there is one, else downloaded (hash-checked).

    Local copies, in order: the folder ``$NSTD_WEIGHTS_DIR`` names, then the Keras cache
    (``$KERAS_HOME/models/``, by default ``~/.keras/models/``). With neither, Keras's file is
    downloaded into the Keras cache and checked against its MD5.
    """
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    cached = keras_home / "models" / KERAS_NOTOP_NAME
    own = os.environ.get("NSTD_WEIGHTS_DIR")
    folders = [*([Path(own).expanduser()] if own else []), cached.parent]
    for folder in folders:
        if (folder / KERAS_NOTOP_NAME).is_file():
            return folder / KERAS_NOTOP_NAME
    url = os.environ.get("NSTD_IMAGENET_URL", KERAS_NOTOP_URL)
    try:
        from keras.utils import get_file

        return Path(
            get_file(KERAS_NOTOP_NAME, url, cache_subdir="models",
                     cache_dir=str(keras_home), file_hash=KERAS_NOTOP_MD5)
        )
    except Exception as exc:  # noqa: BLE001 - no network, bad hash, read-only home
        looked = " or ".join(str(f) for f in folders)
        raise WeightsError(
            f"weights 'imagenet': {KERAS_NOTOP_NAME} is not in {looked} and could not be "
            f"downloaded ({type(exc).__name__}: {exc}). Download it on a machine that can "
            f"(~80 MB, md5 {KERAS_NOTOP_MD5}, from {KERAS_NOTOP_URL}) and either put it at "
            f"{cached} (the Keras cache), or put it in a folder of your own and set "
            "NSTD_WEIGHTS_DIR to that folder. Or set weights (--weights, or 'weights:' in the "
            "config) to the path of imagenet-vgg-verydeep-19.mat, a Keras VGG-19 .h5, or an "
            ".npz made by 'nstd weights convert'."
        ) from exc


# --- readers -----------------------------------------------------------------------


def _mat_str(value: np.ndarray) -> str:
    arr = np.asarray(value).ravel()
    return str(arr[0]) if arr.size else ""


def _load_mat(path: Path) -> VGGWeights:
    """MatConvNet: both the current and the older field order, read by field name."""
    import scipy.io

    mat = scipy.io.loadmat(path, variable_names=["layers", "meta", "normalization"])
    if "layers" not in mat:
        raise WeightsError(f"{path}: .mat file has no 'layers' variable; not MatConvNet VGG-19.")
    kernels, biases = {}, {}
    for entry in np.asarray(mat["layers"]).ravel():
        layer = np.asarray(entry).ravel()[0]
        names = layer.dtype.names or ()
        if "name" not in names or "weights" not in names:
            raise WeightsError(f"{path}: a layer struct lacks 'name' or 'weights' fields.")
        name = _mat_str(layer["name"])
        if name not in STANDARD_WIDTH:
            continue  # relu, pool, fc6-8, prob: not needed
        pair = np.asarray(layer["weights"]).ravel()
        if pair.size != 2:
            raise WeightsError(f"{path}: layer {name} has {pair.size} weight arrays, expected 2.")
        kernel, bias = np.asarray(pair[0]), np.asarray(pair[1])
        if kernel.ndim != 4:
            raise WeightsError(f"{path}: layer {name} kernel has shape {kernel.shape}, expected 4-D.")
        kernels[name] = np.transpose(kernel, (1, 0, 2, 3))  # [w, h, in, out] → [h, w, in, out]
        biases[name] = bias.reshape(-1)
    mean = _mat_mean(mat)
    notes = [] if mean is not None else ["no normalization in file: using the ImageNet mean"]
    mean = IMAGENET_MEAN_RGB if mean is None else mean
    return VGGWeights(kernels, biases, np.asarray(mean, np.float32), notes=notes)


def _mat_mean(mat: dict) -> np.ndarray | None:
    """Mean pixel from ``meta.normalization`` (current) or ``normalization`` (older)."""
    norm = None
    if "meta" in mat and "normalization" in (mat["meta"].dtype.names or ()):
        norm = mat["meta"]["normalization"].ravel()[0]
    elif "normalization" in mat:
        norm = mat["normalization"]
    if norm is None:
        return None
    norm = np.asarray(norm).ravel()[0]
    if "averageImage" not in (norm.dtype.names or ()):
        return None
    avg = np.asarray(norm["averageImage"], dtype=np.float64)
    if avg.size == 1 and avg.dtype == object:
        avg = np.asarray(avg.ravel()[0], dtype=np.float64)
    if avg.size == 0 or avg.size % 3:
        return None
    return avg.reshape(-1, 3).mean(axis=0)


def _h5_datasets(group) -> list:
    import h5py

    found = []
    group.visititems(lambda _n, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _load_h5(path: Path) -> VGGWeights:
    """Keras legacy h5: the no-top weights file or a whole-model VGG19 save."""
    import h5py

    kernels, biases = {}, {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        for name in CONV_LAYERS:
            b, i = name[4], name[6]
            group_name = f"block{b}_conv{i}"
            if group_name not in root:
                raise WeightsError(
                    f"{path}: layer {group_name} (VGG-19 {name}) is missing; is this a "
                    "VGG-19 file (VGG-16 has no block3_conv4)?"
                )
            arrays = [np.asarray(ds[()]) for ds in _h5_datasets(root[group_name])]
            kern = [a for a in arrays if a.ndim == 4]
            bias = [a for a in arrays if a.ndim == 1]
            if len(kern) != 1 or len(bias) != 1:
                raise WeightsError(
                    f"{path}: layer {group_name} should hold one kernel and one bias, found "
                    f"arrays of shapes {[a.shape for a in arrays]}."
                )
            kernels[name], biases[name] = kern[0], bias[0]
    # Caffe-converted: first layer expects BGR. Flip its input channels to take RGB.
    if kernels["conv1_1"].shape[2] == 3:
        kernels["conv1_1"] = kernels["conv1_1"][:, :, ::-1, :]
    return VGGWeights(kernels, biases, np.asarray(IMAGENET_MEAN_RGB, np.float32))


def _load_npz(path: Path) -> VGGWeights:
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if "mean_rgb" not in keys:
            raise WeightsError(f"{path}: .npz without 'mean_rgb'; not made by 'nstd weights convert'.")
        kernels, biases = {}, {}
        for name in CONV_LAYERS:
            for part, dest in (("kernel", kernels), ("bias", biases)):
                key = f"{name}/{part}"
                if key not in keys:
                    raise WeightsError(f"{path}: layer {name} has no {part} ('{key}' missing).")
                dest[name] = z[key]
        mean = z["mean_rgb"]
    return VGGWeights(kernels, biases, mean.astype(np.float32))


# --- validation and conversion -------------------------------------------------------


def validate(w: VGGWeights, path: Path) -> None:
    """One check for every format: all layers, consistent shapes, float, finite."""
    prev_out = 3
    for name in CONV_LAYERS:
        if name not in w.kernels:
            raise WeightsError(f"{path}: layer {name} is missing; VGG-19 needs {', '.join(CONV_LAYERS)}.")
        k, b = np.asarray(w.kernels[name]), np.asarray(w.biases[name])
        for what, arr in (("kernel", k), ("bias", b)):
            if not np.issubdtype(arr.dtype, np.floating):
                raise WeightsError(f"{path}: layer {name} {what} has dtype {arr.dtype}, expected floating point.")
        if k.ndim != 4 or k.shape[:2] != (3, 3) or k.shape[2] != prev_out:
            raise WeightsError(
                f"{path}: layer {name} kernel has shape {k.shape}, expected (3, 3, {prev_out}, N) "
                f"(VGG-19: N={STANDARD_WIDTH[name]})."
            )
        if b.shape != (k.shape[3],):
            raise WeightsError(f"{path}: layer {name} bias has shape {b.shape}, expected ({k.shape[3]},).")
        if not (np.isfinite(k).all() and np.isfinite(b).all()):
            raise WeightsError(f"{path}: layer {name} contains NaN or infinite values.")
        w.kernels[name] = np.ascontiguousarray(k, dtype=np.float32)
        w.biases[name] = np.ascontiguousarray(b, dtype=np.float32)
        prev_out = k.shape[3]
    mean = np.asarray(w.mean_rgb, dtype=np.float32).reshape(-1)
    if mean.shape != (3,) or not np.isfinite(mean).all():
        raise WeightsError(f"{path}: mean pixel has shape {mean.shape} or bad values; expected 3 numbers.")
    w.mean_rgb = mean


def save_npz(w: VGGWeights, out: Path, fp16: bool = False) -> Path:
    """Write the compact conv-only file (``nstd weights convert``) atomically."""
    dtype = np.float16 if fp16 else np.float32
    arrays: dict[str, np.ndarray] = {"mean_rgb": w.mean_rgb.astype(np.float32)}
    for name in CONV_LAYERS:
        arrays[f"{name}/kernel"] = w.kernels[name].astype(dtype)
        arrays[f"{name}/bias"] = w.biases[name].astype(dtype)
    arrays["format_version"] = np.asarray(NPZ_FORMAT_VERSION)
    arrays["source_sha256"] = np.asarray(w.sha256)

    def write(fh) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # uncompressed: loads fastest, weights barely compress
        fh.write(buf.getvalue())

    return write_atomic(Path(out), write)


def describe(w: VGGWeights) -> str:
    """Human-readable summary for ``nstd weights info``."""
    lines = [
        f"file:     {w.source}",
        f"format:   {w.format}",
        f"sha256:   {w.sha256}",
        f"mean RGB: {', '.join(f'{v:.3f}' for v in w.mean_rgb)}",
        f"VGG-19 standard widths: {'yes' if w.standard_widths else 'no (custom widths)'}",
        "layers:",
    ]
    params = 0
    for name in CONV_LAYERS:
        k = w.kernels[name]
        params += k.size + w.biases[name].size
        lines.append(f"  {name:8s} kernel {tuple(k.shape)}  bias {tuple(w.biases[name].shape)}")
    lines.append(f"parameters: {params:,}")
    lines.extend(f"note: {n}" for n in w.notes)
    return "\n".join(lines)


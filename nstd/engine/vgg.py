"""VGG-19 as plain TensorFlow ops (channels-last), run only as deep as a job needs."""

from __future__ import annotations

from nstd.engine.backend import tf
from nstd.engine.losses import crop, layer_stride

from nstd.engine.weights import CONV_LAYERS, VGGWeights

POOLINGS = ("avg", "max")


def layer_index(name: str) -> int:
    try:
        return CONV_LAYERS.index(name)
    except ValueError:
        raise ValueError(f"unknown VGG-19 layer {name!r}; known: {', '.join(CONV_LAYERS)}") from None


class VGG19:
    """The conv part of VGG-19 on one device; weights are uploaded once and shared."""

    def __init__(self, weights: VGGWeights) -> None:
        self.mean = tf.constant(weights.mean_rgb.reshape(1, 1, 1, 3))
        self.kernels = [tf.constant(weights.kernels[n]) for n in CONV_LAYERS]
        self.biases = [tf.constant(weights.biases[n]) for n in CONV_LAYERS]
        self._cast: dict[tf.DType, tuple[list, list]] = {tf.float32: (self.kernels, self.biases)}

    def _weights(self, dtype: tf.DType) -> tuple[list, list]:
        """The kernels and biases in ``dtype``, converted once."""
        if dtype not in self._cast:
            with tf.init_scope():  # eager constants, even when first asked for inside a traced step
                self._cast[dtype] = ([tf.cast(k, dtype) for k in self.kernels],
                                     [tf.cast(b, dtype) for b in self.biases])
        return self._cast[dtype]

    def features(self, image: tf.Tensor, layers: tuple[str, ...], pooling: str,
                 dtype: tf.DType = tf.float32, first_padding: str = "ZERO", edge: int = 0) -> dict[str, tf.Tensor]:
        """Post-ReLU activations of ``layers`` for RGB 0–255 ``image`` [n, h, w, 3], as float32.

        Stops after the deepest requested layer: no work is done past it. ``dtype``: the
        format the convolutions run in (bf16, fp16); what they return is float32 again.
        ``first_padding``: ZERO (VGG's own) or REFLECT, what conv1_1 sees past the image's
        edge (bench/techniques.py measures it). ``edge`` (a multiple of 16): the image is
        reflected this many pixels past each side and the features of the reflection
        dropped, so the pixels at the border are seen as if the picture went on; zero
        padding lets an optimiser paint a line along the border that only the padding reads.
        """
        last = max(layer_index(n) for n in layers)
        pool = tf.nn.avg_pool2d if pooling == "avg" else tf.nn.max_pool2d
        kernels, biases = self._weights(dtype)
        if edge:
            image = tf.pad(image, [[0, 0], [edge, edge], [edge, edge], [0, 0]], "REFLECT")
        x = tf.cast(image - self.mean, dtype)
        out: dict[str, tf.Tensor] = {}
        for i, name in enumerate(CONV_LAYERS[: last + 1]):
            if i and name.endswith("_1"):  # a new block starts after a 2×2 pool
                x = pool(x, 2, 2, "SAME")
            if i == 0 and first_padding == "REFLECT":
                x = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT"), kernels[i], 1, "VALID")
            else:
                x = tf.nn.conv2d(x, kernels[i], 1, "SAME")
            x = tf.nn.relu(x + biases[i])
            if name in layers:
                out[name] = tf.cast(crop(x, (edge,) * 4, layer_stride(name)), tf.float32)
        return out

    def step_flops(self, height: int, width: int, layers: tuple[str, ...], style_layers: tuple[str, ...] = ()) -> float:
        """FLOPs of one loss-and-gradient step: the matrix products the step actually runs.

        Convolutions up to the deepest of ``layers``, forward and back to the input (the
        same count again; conv1_1 too, since we differentiate with respect to the image),
        plus each style layer's Gram matrix FᵀF: 2·N·C² forward, twice that backward.
        Bias, ReLU, pooling and the losses' elementwise work are memory-bound and not counted.
        """
        last = max(layer_index(n) for n in layers)
        flops, h, w = 0.0, height, width
        for i, name in enumerate(CONV_LAYERS[: last + 1]):
            if i and name.endswith("_1"):
                h, w = -(-h // 2), -(-w // 2)
            kh, kw, cin, cout = self.kernels[i].shape
            flops += 2.0 * (2.0 * h * w * kh * kw * cin * cout)
            if name in style_layers:
                flops += 6.0 * h * w * cout * cout
        return flops


def gram(features: tf.Tensor) -> tf.Tensor:
    """Gram matrix normalised by pixel count, so images of any size compare."""
    shape = tf.shape(features)
    flat = tf.reshape(features, (-1, shape[-1]))
    n = tf.cast(tf.shape(flat)[0], features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / n

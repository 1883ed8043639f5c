"""The compiled loss-and-gradient step: one builder, traced once per shape and precision.

A step takes the image and the objective's inputs (:class:`StepInputs`) and returns
:class:`StepOutput`: the gradient and each weighted term of the loss on its own. The host
adds the terms up exactly (:meth:`StepOutput.parts`): TensorFlow's sum of a few float32
scalars can round differently from one call to the next once other work has run in the
process, and a loss that moves in its last bit sends L-BFGS down another path, so the
same job would not give the same picture twice. What it is specialised for is a :class:`StepShape`:
the image's size, the layers, the pooling, a tile's frame of context, and how many masked
regions the style loss has (0: one Gram matrix per style layer over the whole image).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, NamedTuple

from nstd.engine import plan, precision
from nstd.engine.backend import repeatable, tf
from nstd.engine.losses import (NO_MARGIN, Margin, content_terms, crop, hold_term, layer_stride, laplacian_term,
                                tv_term)
from nstd.engine.vgg import VGG19, gram


class StepShape(NamedTuple):
    """What a compiled step is specialised for."""

    height: int
    width: int
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str
    margin: Margin = NO_MARGIN
    regions: int = 0
    hold: float = 0.0  # a detail pass: σ of the blur at which it holds the picture before (plan.Scale)

    @property
    def key(self) -> str:
        """How ``auto``'s choice for this shape is remembered (in the process and on disk).

        The size enters as its class, the long side to the nearest half octave: the choice
        depends on the machine, the layers and roughly the size, not on a photo's aspect
        ratio, so a second photo of another shape starts at once. The tile's frame is not
        part of it either: the convolutions run over the whole window either way."""
        return (f"long{size_class(self.width, self.height)}|{'+'.join(self.content_layers)}|"
                f"{'+'.join(self.style_layers)}|{self.pooling}|{self.regions}" + ("|detail" if self.hold else ""))


def size_class(width: int, height: int) -> int:
    """The long side rounded to the nearest half octave (…, 256, 362, 512, 724, 1024, …)."""
    return round(2 ** (round(2 * math.log2(max(width, height, 1))) / 2))


class StepWeights(NamedTuple):
    """The loss weights as the step reads them (tensors; see :class:`nstd.engine.objective.LossWeights`)."""

    content: Any  # (content layers,)
    style: Any  # (style layers, regions or 1)
    tv: Any  # scalar
    laplacian: Any  # scalar
    hold: Any  # scalar


class StepInputs(NamedTuple):
    """Everything a step reads besides the image, as tensors."""

    content_targets: list  # per content layer, the content's features inside the frame
    laplacian_target: Any  # the content's Laplacian inside the frame
    hold_target: Any  # a detail pass: the held picture blurred, inside the frame (else unused)
    gram_targets: list  # per style layer: (C, C), or (regions, C, C) with masks
    masks: list  # per style layer: (regions, positions); empty without regions
    weights: StepWeights


class StepOutput(NamedTuple):
    """What a step returns: the gradient of the loss, and the loss as its weighted terms."""

    gradient: Any  # [1, h, w, 3]
    content: Any  # (terms,): per content layer, then the Laplacian, then a detail pass's hold
    style: Any  # (terms,): per style layer and region
    tv: Any  # scalar

    def parts(self) -> dict[str, float]:
        """loss, content, style and tv as the exact sums of the terms (:func:`math.fsum`)."""
        content, style = self.content.numpy().tolist(), self.style.numpy().tolist()
        tv = float(self.tv)
        return {"loss": math.fsum(content + style + [tv]), "content": math.fsum(content),
                "style": math.fsum(style), "tv": tv}


def build_step(vgg: VGG19, shape: StepShape, how: precision.Precision) -> Callable:
    """``step(x, *inputs) -> StepOutput`` for one shape, uncompiled.

    ``shape.margin`` (top, bottom, left, right pixels): a frame of context around a tile; the
    losses only see the features inside it. ``shape.regions`` > 0: spatial control (Gatys et
    al. 2017), one masked Gram FᵀMF/ΣM per region and style layer.
    """
    layers = tuple(dict.fromkeys(shape.content_layers + shape.style_layers))
    margin, k = shape.margin, shape.regions
    scale = precision.FP16_LOSS_SCALE if how.compute == "fp16" else 1.0

    def grams(f: Any, j: int, targets: list, masks: list) -> Iterator[tuple[Any, Any]]:
        """(Gram, target) pairs of style layer ``j``: one, or one per region. A generator, so
        each region's ops are made just before its term's (the order the graph has always had)."""
        if not k:
            yield gram(f), targets[j]
            return
        flat = tf.reshape(f, (-1, tf.shape(f)[-1]))
        for r in range(k):
            m = masks[j][r][:, None]
            yield tf.matmul(flat * m, flat, transpose_a=True) / tf.maximum(tf.reduce_sum(m), 1e-6), targets[j][r]

    def step(x, content_targets, laplacian_target, hold_target, gram_targets, masks, weights):
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats = {n: crop(f, margin, layer_stride(n))
                     for n, f in vgg.features(x, layers, pooling=shape.pooling, dtype=how.dtype,
                                              edge=plan.vgg_edge(shape.hold)).items()}
            content = content_terms(feats, shape.content_layers, content_targets, weights.content) + \
                [weights.laplacian * laplacian_term(x, laplacian_target, margin)]
            if shape.hold:
                content.append(weights.hold * hold_term(x, hold_target, shape.hold, margin))
            style = []
            for j, name in enumerate(shape.style_layers):
                c = tf.cast(tf.shape(feats[name])[-1], tf.float32)
                for r, (g, target) in enumerate(grams(feats[name], j, gram_targets, masks)):
                    style.append(weights.style[j, r] * tf.reduce_sum(tf.square(g - target)) / (4.0 * c * c))
            tv = weights.tv * tv_term(crop(x, margin))
            scaled = tf.add_n(content + style + [tv]) * scale  # fp16: keeps small gradients above underflow
        return StepOutput(tape.gradient(scaled, x) / scale, tf.stack(content),
                          tf.stack(style) if style else tf.zeros([0]), tv)

    return step


class StepCompiler:
    """Compiled steps, one per (shape, precision), traced once and reused by every job."""

    def __init__(self, vgg: VGG19) -> None:
        self.vgg = vgg
        self._steps: dict[tuple[StepShape, precision.Precision], Callable] = {}

    def get(self, shape: StepShape, how: precision.Precision = precision.DEFAULT) -> Callable:
        """The compiled step. autograph=False: its loops run over Python lists, so there is
        nothing to convert, and converting costs a third of each trace (2.6 -> 1.7 s a shape;
        a tiled scale traces ~18)."""
        key = (shape, how)
        if key not in self._steps:
            self._steps[key] = tf.function(build_step(self.vgg, shape, how), jit_compile=how.jit,
                                           reduce_retracing=False, autograph=False)
        compiled = self._steps[key]

        def step(*args: Any) -> StepOutput:
            repeatable.ensure()  # the same image gives the same gradient (backend.Repeatable)
            return compiled(*args)

        return step

    @property
    def compiled(self) -> dict[tuple[StepShape, precision.Precision], Callable]:
        """The steps compiled so far (a copy), by (shape, precision)."""
        return dict(self._steps)

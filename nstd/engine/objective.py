"""The objective: its loss weights, by name and normalised on the pair, and ``fg(x)``.

Origin objective (``normalize: false``): the raw weights. Normalised objective: each term
is divided by its own scale on this pair, measured on the whole content image, so a
setting means the same on every pair and size. The content term is a relative feature
error, mean((F−P)²)/mean(P²); each style layer's Gram distance is divided by its distance
at the content image, ‖G_c − A‖², so every layer reads 1 there; TV and the Laplacian term
are relative to the content's own. Then ``strength`` sets the balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from nstd.engine.backend import tf
from nstd.engine.losses import (NO_MARGIN, Margin, blur, content_scale, crop, hold_scale, laplacian, laplacian_scale,
                                layer_stride, style_scale, tv_scale)
from nstd.engine.precision import Chooser, Precision
from nstd.engine.regions import Region, layer_masks, masked_gram
from nstd.engine.steps import StepCompiler, StepInputs, StepShape, StepWeights
from nstd.engine.targets import StyleTargets


@dataclass(frozen=True)
class LossWeights:
    """Each term's weight, as the step multiplies it."""

    content: tuple[float, ...]  # per content layer
    style: tuple[tuple[float, ...], ...]  # per style layer, per masked region (one without masks)
    tv: float
    laplacian: float  # part of the content, so it follows content_weight
    hold: float = 0.0  # a detail pass's hold on the picture before, also part of the content

    def tensors(self) -> StepWeights:
        return StepWeights(tf.constant(np.asarray(self.content, np.float32)),
                           tf.constant(np.asarray(self.style, np.float32)),
                           tf.constant(np.float32(self.tv)), tf.constant(np.float32(self.laplacian)),
                           tf.constant(np.float32(self.hold)))


class RegionTargets(NamedTuple):
    """Spatial control's targets: per style layer the Gram targets (regions, C, C) and the
    masks (regions, positions), and the loss weights."""

    grams: list[np.ndarray]
    masks: list[np.ndarray]
    weights: LossWeights


class Objective:
    """``fg(x) -> (loss, gradient, parts)`` for an image ``x`` (0–255 RGB, float64) of one shape."""

    def __init__(self, step: Callable, inputs: StepInputs, precision: Precision) -> None:
        self.step, self.inputs = step, inputs
        self.precision = precision  # what the step runs with

    def __call__(self, xv: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        out = self.step(tf.constant(xv[None], tf.float32), *self.inputs)
        parts = out.parts()
        return parts["loss"], out.gradient.numpy()[0].astype(np.float64), parts


def image_weights(c_rgb: np.ndarray, params: Any) -> tuple[float, float]:
    """(tv, laplacian): the terms on pixels rather than features."""
    tv = params.tv_weight
    lap = params.content_weight * params.laplacian_weight
    if params.normalize:
        tv *= tv_scale(c_rgb) if tv else 1.0
        lap *= laplacian_scale(c_rgb) if lap else 1.0
    return tv, lap


def layer_names(params: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(content layers, style layers) without their weights."""
    return tuple(n for n, _ in params.content_layers), tuple(n for n, _ in params.style_layers)


class Objectives:
    """Builds objectives from style targets, compiled steps and the precision chooser."""

    def __init__(self, targets: StyleTargets, steps: StepCompiler, chooser: Chooser) -> None:
        self.targets, self.steps, self.chooser = targets, steps, chooser

    def weights(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Any, hold: float = 0.0) -> LossWeights:
        """The loss weights for Gram targets ``grams``, normalised on the whole content image
        ``c_rgb`` (see the module's text). ``hold`` > 0: a detail pass, whose content image
        is the picture it holds: a relative error of the blurred picture weighs
        ``detail_hold`` times a relative content error."""
        c_w = [params.content_weight * wt for _, wt in params.content_layers]
        s_w = [params.style_weight * wt for _, wt in params.style_layers]
        if params.normalize:
            c_layers, s_layers = layer_names(params)
            layers = tuple(dict.fromkeys(c_layers + s_layers))
            own = dict(zip(layers, self.targets.grams_of(c_rgb, layers, params.pooling)))
            for i, n in enumerate(c_layers):
                c_w[i] *= content_scale(float(np.trace(own[n])), own[n].shape[0])
            for j, n in enumerate(s_layers):
                s_w[j] *= style_scale(own[n], grams[j])
        held = params.content_weight * params.detail_hold * hold_scale(c_rgb) if hold else 0.0
        return LossWeights(tuple(c_w), tuple((w,) for w in s_w), *image_weights(c_rgb, params), held)

    def regions(self, regions: list[Region], c_rgb: np.ndarray, params: Any) -> RegionTargets:
        """Targets and weights with one masked Gram matrix per region and style layer; a
        region without styles keeps the content (its style weight is 0)."""
        h, w = c_rgb.shape[:2]
        c_layers, s_layers = layer_names(params)
        feats = self.targets.features(c_rgb, tuple(dict.fromkeys(c_layers + s_layers)), params.pooling)
        masks = layer_masks(regions, [feats[n].shape[1:3] for n in s_layers])
        targets = [self.targets.blend(r.styles, w, h, params) if r.styles else None for r in regions]
        c_w = [params.content_weight * wt for _, wt in params.content_layers]
        for i, n in enumerate(c_layers):
            if params.normalize:  # trace(G_c) is the mean over positions of Σ_c F²
                c_w[i] *= content_scale(float(np.mean(np.sum(feats[n] ** 2, -1))), feats[n].shape[-1])
        grams, s_w = [], []
        for j, (n, wt) in enumerate(params.style_layers):
            c = feats[n].shape[-1]
            own = [masked_gram(feats[n], m) for m in masks[j]]
            layer = [t[j] if t is not None else np.zeros((c, c), np.float32) for t in targets]
            grams.append(np.stack(layer))
            scales = [style_scale(g_own, g_t) if params.normalize else 1.0 for g_own, g_t in zip(own, layer)]
            s_w.append(tuple(params.style_weight * wt * s if t is not None else 0.0 for s, t in zip(scales, targets)))
        return RegionTargets(grams, masks, LossWeights(tuple(c_w), tuple(s_w), *image_weights(c_rgb, params)))

    def build(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Any, weights: LossWeights,
              margin: Margin = NO_MARGIN, masks: list[np.ndarray] | None = None, once: bool = False,
              hold: float = 0.0) -> Objective:
        """The objective at ``c_rgb``'s shape; the content's targets are computed here.

        ``weights`` come from :meth:`weights` on the whole image (a tile passes the whole
        image's, so every tile optimises the same objective). ``margin``: a tile's frame of
        context. ``once``: for one evaluation, so ``auto`` measures nothing
        (:meth:`Chooser.for_one_evaluation`).
        """
        shape, inputs = self._step(c_rgb, grams, params, weights, margin, masks, hold)
        if once:
            how = self.chooser.for_one_evaluation(shape)
        else:
            made: list[tuple[StepShape, StepInputs, Any]] = []  # the probe's step, made only if timing runs

            def probe(how: Precision) -> tuple:
                if not made:
                    pixels = self.chooser.measuring.probe_pixels
                    if shape.height * shape.width > pixels and not masks:  # timed on a crop of its size class
                        crop_x = proxy_crop(c_rgb, pixels)
                        made.append((*self._step(crop_x, grams, params, weights, NO_MARGIN, None, hold),
                                     tf.constant(crop_x[None], tf.float32)))
                    else:
                        made.append((shape, inputs, tf.constant(c_rgb[None], tf.float32)))
                probe_shape, probe_inputs, x = made[0]
                out = self.steps.get(probe_shape, how)(x, *probe_inputs)
                return out.parts()["loss"], out.gradient

            how = self.chooser.choose(shape, probe)
        return Objective(self.steps.get(shape, how), inputs, how)

    def _step(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Any, weights: LossWeights, margin: Margin,
              masks: list[np.ndarray] | None, hold: float) -> tuple[StepShape, StepInputs]:
        """The step's shape and inputs for content ``c_rgb`` (the content's targets computed here)."""
        h, w = c_rgb.shape[:2]
        c_layers, s_layers = layer_names(params)
        c_feats = self.targets.features(c_rgb, c_layers, params.pooling) if c_layers else {}
        c_x = tf.constant(c_rgb[None], tf.float32)
        inputs = StepInputs([tf.constant(crop(c_feats[n], margin, layer_stride(n))) for n in c_layers],
                            laplacian(c_x, margin), crop(blur(c_x, hold), margin) if hold else tf.constant(0.0),
                            [tf.constant(g) for g in grams], [tf.constant(m) for m in masks] if masks else [],
                            weights.tensors())
        return StepShape(h, w, c_layers, s_layers, params.pooling, margin, len(masks[0]) if masks else 0, hold), inputs


def proxy_crop(c_rgb: np.ndarray, pixels: int) -> np.ndarray:
    """The centre of ``c_rgb`` with at most ``pixels``, its shape's proportions kept: what
    ``auto`` times a big shape's candidates on. Which format wins depends on the machine and
    the layers, not on a shape's last pixels, and timing four candidates at print size costs
    minutes (:class:`~nstd.engine.precision.Chooser` keys its choice by size class)."""
    h, w = c_rgb.shape[:2]
    f = min(1.0, (pixels / (h * w)) ** 0.5)
    ch, cw = max(16, int(h * f)), max(16, int(w * f))
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(c_rgb[y:y + ch, x:x + cw])

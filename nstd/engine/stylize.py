"""The resident style-transfer engine.

One :class:`Engine` holds the VGG-19 weights on the device, a compiled loss-and-gradient
step per (image shape, layers, pooling), and a cache of style Gram matrices keyed by the
style image's content hash. Jobs reuse all of it; only targets are computed per job.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np
from nstd.engine.backend import tf

from nstd.engine import memory, plan, precision, tiling
from nstd.engine.checkpoint import Checkpoint, TileState, load_checkpoint, save_checkpoint  # noqa: F401 - re-exported
from nstd.engine.plan import check_size
from nstd.engine.losses import (Margin, NO_MARGIN, content_scale, content_term, crop, laplacian, laplacian_scale,
                                 laplacian_term, layer_stride, style_scale, tv_scale, tv_term)
from nstd.engine.regions import Region, layer_masks, masked_gram
from nstd.engine.solvers import Solver, make_solver
from nstd.engine.vgg import VGG19, gram
from nstd.engine.weights import VGGWeights
from nstd.images import LoadedImage, histogram_transfer, luminance_transfer, resize
from nstd.params import Params

log = logging.getLogger("nstd")
OOM_ERRORS = (MemoryError, tf.errors.ResourceExhaustedError)
GRAM_TILE_MARGIN = 32  # context read around each core when a style image is measured in tiles


class StepShape(NamedTuple):
    """What a compiled step is specialised for; the arguments of :meth:`Engine.step_for`."""

    height: int
    width: int
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str
    margin: Margin = NO_MARGIN
    regions: int = 0

    @property
    def key(self) -> str:
        """How ``auto``'s choice for this shape is remembered (in the process and on disk).

        The tile's frame is not part of it: the convolutions, which decide the speed, run
        over the whole window either way, so all tiles of one window size share one
        measurement (a tiled scale has ~18 frames but ~8 window sizes) and one format."""
        return (f"{self.width}x{self.height}|{'+'.join(self.content_layers)}|{'+'.join(self.style_layers)}|"
                f"{self.pooling}|{self.regions}")


class Interrupted(Exception):
    """Raised when ``should_stop()`` says so; the last checkpoint was just written."""


@dataclass
class Progress:
    scale: int
    scales: int
    iteration: int
    iterations: int
    loss: float
    content: float
    style: float
    tv: float
    elapsed: float
    eta: float | None  # seconds left, from steady steps only; None until one was timed
    tile: int = 0  # 1-based tile number when the scale is tiled, else 0
    tiles: int = 0

    @property
    def eta_text(self) -> str:
        return "ETA ?" if self.eta is None else f"ETA {self.eta:.0f}s"


@dataclass
class Result:
    image: np.ndarray
    alpha: np.ndarray | None
    seed: int
    initial: dict[str, float]
    final: dict[str, float]
    history: list[dict[str, float]]
    iterations: int
    evaluations: int
    stopped_by: str
    timings: dict[str, float]
    shapes: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    precision: list[str] = field(default_factory=list)  # compute/compiler of the steps, in order


def device_name() -> str:
    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


class Engine:
    """Resident optimizer: build once, call :meth:`stylize` for every job."""

    def __init__(self, weights: VGGWeights, *, compute: str = "auto", compiler: str = "auto",
                 gram_cache_size: int = 64, memory_limit: int | None = None,
                 choices: precision.ChoiceCache | None = None, measuring: precision.Measuring | None = None) -> None:
        """``compute``: fp32 | bf16 | fp16 | auto, the convolutions' number format;
        ``compiler``: xla | graph | auto (see :mod:`nstd.engine.precision`); ``choices``:
        where ``auto`` remembers what it measured (default: the user's cache folder);
        ``measuring``: how it measures (:class:`precision.Measuring`).
        ``memory_limit``: bytes the process may use (default: the machine's memory)."""
        self.chooser = precision.Chooser(compute, compiler, choices, measuring)  # checks the names first
        self.memory_limit = memory_limit
        self.weights = weights
        self.vgg = VGG19(weights)
        self._steps: dict[tuple, Callable] = {}
        self._grams: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()
        self._gram_cache_size = gram_cache_size
        self.device = device_name()

    # --- compiled pieces -----------------------------------------------------------

    def step_for(self, height: int, width: int, content_layers: tuple[str, ...], style_layers: tuple[str, ...],
                 pooling: str, margin: Margin = NO_MARGIN, regions: int = 0,
                 how: precision.Precision = precision.DEFAULT) -> Callable:
        """The compiled loss+gradient for this shape, layer set and precision (traced once, reused).

        ``margin`` (top, bottom, left, right pixels): a frame of context around a tile;
        the losses only see the features inside it. ``regions`` > 0: spatial control
        (Gatys et al. 2017), one masked Gram FᵀMF/ΣM per region and style layer.
        """
        if regions:
            return self._region_step(height, width, content_layers, style_layers, pooling, regions, how)
        key = (height, width, content_layers, style_layers, pooling, margin, how)
        if key in self._steps:
            return self._steps[key]
        vgg, layers = self.vgg, tuple(dict.fromkeys(content_layers + style_layers))
        n_c = len(content_layers)
        scale = precision.FP16_LOSS_SCALE if how.compute == "fp16" else 1.0

        def step(x, content_targets, laplacian_target, gram_targets, weights):
            # weights: [content_weight·w_l ..., style_weight·w_l ..., tv_weight, laplacian_weight]
            with tf.GradientTape() as tape:
                tape.watch(x)
                feats = {n: crop(f, margin, layer_stride(n))
                         for n, f in vgg.features(x, layers, pooling, how.dtype).items()}
                content = content_term(feats, content_layers, content_targets, weights) + \
                    weights[-1] * laplacian_term(x, laplacian_target, margin)
                style = tf.constant(0.0)
                for j, name in enumerate(style_layers):
                    c = tf.cast(tf.shape(feats[name])[-1], tf.float32)
                    diff = gram(feats[name]) - gram_targets[j]
                    style += weights[n_c + j] * tf.reduce_sum(tf.square(diff)) / (4.0 * c * c)
                tv = weights[-2] * tv_term(crop(x, margin))
                total = content + style + tv
                scaled = total * scale  # fp16: keeps small gradients above underflow
            return total, tape.gradient(scaled, x) / scale, content, style, tv

        return self._compiled(key, step, how)

    def _compiled(self, key: tuple, step: Callable, how: precision.Precision) -> Callable:
        """``step`` as one traced function, kept under ``key``. autograph=False: the steps'
        loops run over Python lists, so there is nothing to convert, and converting costs a
        third of each trace (2.6 -> 1.7 s a shape; a tiled scale traces ~18)."""
        self._steps[key] = tf.function(step, jit_compile=how.jit, reduce_retracing=False, autograph=False)
        return self._steps[key]

    def _region_step(self, height: int, width: int, content_layers: tuple[str, ...], style_layers: tuple[str, ...],
                     pooling: str, k: int, how: precision.Precision) -> Callable:
        """The step with ``k`` masked regions: weights are [content…, (style layer j, region r)…, tv, laplacian]."""
        key = (height, width, content_layers, style_layers, pooling, "regions", k, how)
        if key in self._steps:
            return self._steps[key]
        vgg, layers = self.vgg, tuple(dict.fromkeys(content_layers + style_layers))
        n_c = len(content_layers)
        scale = precision.FP16_LOSS_SCALE if how.compute == "fp16" else 1.0

        def step(x, content_targets, laplacian_target, gram_targets, masks, weights):
            # gram_targets[j]: (k, C, C); masks[j]: (k, positions) at layer j's resolution
            with tf.GradientTape() as tape:
                tape.watch(x)
                feats = vgg.features(x, layers, pooling, how.dtype)
                content = content_term(feats, content_layers, content_targets, weights) + \
                    weights[-1] * laplacian_term(x, laplacian_target)
                style = tf.constant(0.0)
                for j, name in enumerate(style_layers):
                    c = tf.cast(tf.shape(feats[name])[-1], tf.float32)
                    flat = tf.reshape(feats[name], (-1, tf.shape(feats[name])[-1]))
                    for r in range(k):
                        m = masks[j][r][:, None]
                        g = tf.matmul(flat * m, flat, transpose_a=True) / tf.maximum(tf.reduce_sum(m), 1e-6)
                        style += weights[n_c + j * k + r] * tf.reduce_sum(tf.square(g - gram_targets[j][r])) / (
                            4.0 * c * c)
                tv = weights[-2] * tv_term(x)
                total = content + style + tv
                scaled = total * scale  # fp16: keeps small gradients above underflow
            return total, tape.gradient(scaled, x) / scale, content, style, tv

        return self._compiled(key, step, how)

    def features(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str) -> dict[str, np.ndarray]:
        out = self.vgg.features(tf.constant(rgb[None], tf.float32), layers, pooling)
        return {k: v.numpy() for k, v in out.items()}

    def style_grams(self, style: LoadedImage, width: int, height: int, layers: tuple[str, ...],
                    pooling: str) -> list[np.ndarray]:
        """Gram targets of one style image at one size, cached across jobs by content hash.

        A style image too large for one forward pass is measured in tiles (see ``_tiled_grams``).
        """
        key = (style.sha256, width, height, layers, pooling)
        if key in self._grams:
            self._grams.move_to_end(key)
            return self._grams[key]
        grams = self.grams_of(resize(style.rgb, width, height), layers, pooling)
        self._grams[key] = grams
        while len(self._grams) > self._gram_cache_size:
            self._grams.popitem(last=False)
        return grams

    def grams_of(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str) -> list[np.ndarray]:
        """Gram matrices of one image, in tiles when one forward pass would not fit in memory."""
        h, w = rgb.shape[:2]
        available = memory.budget(self.memory_limit)
        if memory.forward_bytes(w * h) > available:
            side = memory.forward_side(available, max(w, h), GRAM_TILE_MARGIN)
            return self._tiled_grams(rgb, layers, pooling, side)
        feats = self.vgg.features(tf.constant(rgb[None], tf.float32), layers, pooling)
        return [gram(feats[n]).numpy() for n in layers]

    def _tiled_grams(self, rgb: np.ndarray, layers: tuple[str, ...], pooling: str, side: int,
                     margin: int = GRAM_TILE_MARGIN) -> list[np.ndarray]:
        """Σ FᵀF over non-overlapping cores, each read with a margin of context, over the count."""
        h, w = rgb.shape[:2]
        sums: list[np.ndarray] = []
        counts: list[int] = []
        for y0 in range(0, h, side):
            for x0 in range(0, w, side):
                y1, x1 = min(y0 + side, h), min(x0 + side, w)
                py0, px0, py1, px1 = max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
                frame = (y0 - py0, py1 - y1, x0 - px0, px1 - x1)
                for i, (g, n) in enumerate(self._region_sums(rgb[py0:py1, px0:px1], frame, layers, pooling)):
                    if i == len(sums):
                        sums.append(g)
                        counts.append(n)
                    else:
                        sums[i] += g
                        counts[i] += n
        return [(s / n).astype(np.float32) for s, n in zip(sums, counts)]

    def blend_grams(self, styles: list[tuple[LoadedImage, float]], width: int, height: int,
                    params: Params) -> list[np.ndarray]:
        """One Gram target per style layer for content of this size, styles mixed by weight.

        Averaging Grams is exact: Σ wᵢ‖G − Gᵢ‖² differs from ‖G − Σ wᵢGᵢ‖² (Σ wᵢ = 1) only
        by a constant, so the gradients are the same.
        """
        s_layers = tuple(n for n, _ in params.style_layers)
        total_weight = sum(wt for _, wt in styles)
        grams: list[np.ndarray] | None = None
        for img, weight in styles:
            g = self.style_grams(img, *plan.style_size(*img.size, width, height, params.style_scale), s_layers,
                                 params.pooling)
            scaled = [gi * (weight / total_weight) for gi in g]
            grams = scaled if grams is None else [a + b for a, b in zip(grams, scaled)]
        return grams

    def loss_weights(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Params) -> np.ndarray:
        """Per-term weights of the step: [content layers…, style layers…, tv, laplacian].

        Origin objective (``normalize: false``): the raw weights. Normalised objective:
        each term is divided by its own scale on this pair, measured on the whole content
        image, so a setting means the same on every pair and size. The content term is a
        relative feature error, mean((F−P)²)/mean(P²); each style layer's Gram distance
        is divided by its distance at the content image, ‖G_c − A‖², so every layer reads
        1 there; TV and the Laplacian term are relative to the content's own. Then
        ``strength`` sets the balance.
        """
        c_w = [params.content_weight * wt for _, wt in params.content_layers]
        s_w = [params.style_weight * wt for _, wt in params.style_layers]
        if params.normalize:
            c_layers = tuple(n for n, _ in params.content_layers)
            s_layers = tuple(n for n, _ in params.style_layers)
            layers = tuple(dict.fromkeys(c_layers + s_layers))
            own = dict(zip(layers, self.grams_of(c_rgb, layers, params.pooling)))
            for i, n in enumerate(c_layers):
                c_w[i] *= content_scale(float(np.trace(own[n])), own[n].shape[0])
            for j, n in enumerate(s_layers):
                s_w[j] *= style_scale(own[n], grams[j])
        return np.asarray(c_w + s_w + self._image_weights(c_rgb, params), np.float32)

    @staticmethod
    def _image_weights(c_rgb: np.ndarray, params: Params) -> list[float]:
        """[tv, laplacian]: the terms on pixels rather than features (the Laplacian one is
        part of the content, so it follows ``content_weight``)."""
        tv = params.tv_weight
        lap = params.content_weight * params.laplacian_weight
        if params.normalize:
            tv *= tv_scale(c_rgb) if tv else 1.0
            lap *= laplacian_scale(c_rgb) if lap else 1.0
        return [tv, lap]

    def region_targets(self, regions: list[Region], c_rgb: np.ndarray, params: Params
                       ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """(Gram targets (k, C, C), masks (k, positions)) per style layer, and the loss weights."""
        h, w = c_rgb.shape[:2]
        c_layers = tuple(n for n, _ in params.content_layers)
        s_layers = tuple(n for n, _ in params.style_layers)
        feats = self.features(c_rgb, tuple(dict.fromkeys(c_layers + s_layers)), params.pooling)
        masks = layer_masks(regions, [feats[n].shape[1:3] for n in s_layers])
        targets = [self.blend_grams(r.styles, w, h, params) if r.styles else None for r in regions]
        grams, weights = [], [params.content_weight * wt for _, wt in params.content_layers]
        for i, n in enumerate(c_layers):
            if params.normalize:  # trace(G_c) is the mean over positions of Σ_c F²
                weights[i] *= content_scale(float(np.mean(np.sum(feats[n] ** 2, -1))), feats[n].shape[-1])
        for j, (n, wt) in enumerate(params.style_layers):
            c = feats[n].shape[-1]
            own = [masked_gram(feats[n], m) for m in masks[j]]
            layer = [t[j] if t is not None else np.zeros((c, c), np.float32) for t in targets]
            grams.append(np.stack(layer))
            for r, (g_own, g_t) in enumerate(zip(own, layer)):
                scale = style_scale(g_own, g_t) if params.normalize else 1.0
                weights.append(params.style_weight * wt * scale if targets[r] is not None else 0.0)
        return grams, masks, np.asarray(weights + self._image_weights(c_rgb, params), np.float32)

    def objective(self, c_rgb: np.ndarray, grams: list[np.ndarray], params: Params, weights: np.ndarray,
                  margin: Margin = NO_MARGIN, masks: list[np.ndarray] | None = None,
                  once: bool = False):
        """``fg(x) -> (loss, gradient, parts)`` at ``c_rgb``'s shape: content targets computed here.

        ``once``: for one evaluation (scoring an image), so ``auto`` measures nothing: it
        takes the step already chosen for this shape, or compiles the cheapest way; timing
        candidates would cost more than the step itself.

        ``weights`` come from :meth:`loss_weights` on the whole image (a tile passes the
        whole image's, so every tile optimises the same objective).
        """
        h, w = c_rgb.shape[:2]
        c_layers = tuple(n for n, _ in params.content_layers)
        s_layers = tuple(n for n, _ in params.style_layers)
        c_feats = self.features(c_rgb, c_layers, params.pooling)
        ct = [tf.constant(crop(c_feats[n], margin, layer_stride(n))) for n in c_layers]
        lt = laplacian(tf.constant(c_rgb[None], tf.float32), margin)
        gt = [tf.constant(g) for g in grams]
        mt = [tf.constant(m) for m in masks] if masks else None
        loss_weights = tf.constant(weights, tf.float32)

        def call(step: Callable, x: Any) -> tuple:
            return step(x, ct, lt, gt, mt, loss_weights) if mt else step(x, ct, lt, gt, loss_weights)

        shape = StepShape(h, w, c_layers, s_layers, params.pooling, margin, len(masks[0]) if masks else 0)
        if once:
            how = self.chooser.for_one_evaluation(shape)
        else:
            how = self.chooser.choose(
                shape, lambda how: call(self.step_for(*shape, how=how), tf.constant(c_rgb[None], tf.float32))[:2])
        step = self.step_for(*shape, how=how)

        def fg(xv: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
            total, grad, lc, ls, lt = call(step, tf.constant(xv[None], tf.float32))
            parts = {"loss": float(total), "content": float(lc), "style": float(ls), "tv": float(lt)}
            return parts["loss"], grad.numpy()[0].astype(np.float64), parts

        fg.precision = how  # type: ignore[attr-defined]
        return fg

    def evaluate(self, image: np.ndarray, content: LoadedImage, styles: list[tuple[LoadedImage, float]],
                 params: Params) -> dict[str, float]:
        """The loss parts of ``image`` on ``params``' objective, at ``image``'s size."""
        h, w = image.shape[:2]
        c_rgb = resize(content.rgb, w, h)
        grams = self.blend_grams(styles, w, h, params)
        fg = self.objective(c_rgb, grams, params, self.loss_weights(c_rgb, grams, params), once=True)
        return fg(np.asarray(image, np.float64))[2]

    # --- one job -------------------------------------------------------------------

    def stylize(
        self,
        content: LoadedImage,
        styles: list[tuple[LoadedImage, float]],
        params: Params,
        *,
        init_image: LoadedImage | None = None,
        progress: Callable[[Progress], None] | None = None,
        checkpoint: Callable[[Checkpoint], None] | None = None,
        checkpoint_every: int = 0,
        resume: Checkpoint | None = None,
        preview: Callable[[np.ndarray, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        regions: list[Region] | None = None,
        temporal: Any = None,
    ) -> Result:
        """Run one job to completion (or time limit); see :class:`Result`.

        Scales run coarse to fine. A scale whose optimisation would not fit in memory (or
        runs out of it) is refined in overlapping tiles that share one style target.
        ``temporal``: a clip frame's pull towards the previous frame (``applies(c_rgb)``,
        ``wrap(fg, c_rgb)``; :class:`nstd.video.temporal.Temporal`), added to the loss of
        each whole-image scale it applies to.
        """
        state = Checkpoint.of(resume)
        seed = state.seed if state is not None else params.seed if params.seed is not None else secrets.randbits(32)
        width, height = check_size(content.size[0], content.size[1], params.size)
        scales = plan.scales(width, height, params)
        run = _Run(params=params, seed=seed, its=[s.iterations for s in scales], work=[s.work for s in scales],
                   t_start=time.monotonic(), elapsed_before=state.elapsed if state else 0.0,
                   history=list(state.history) if state else [], iterations_done=state.iterations_done if state else 0,
                   evaluations=state.evaluations if state else 0, initial=dict(state.initial) if state else {},
                   progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                   should_stop=should_stop, preview=preview, temporal=temporal)
        first_scale = state.scale if state is not None else 0
        x: np.ndarray | None = None
        final: dict[str, float] = {}
        for si in range(first_scale, len(scales)):
            w, h = scales[si].size
            restored = state if si == first_scale else None
            c_rgb = resize(content.rgb, w, h)
            t0 = time.monotonic()
            masks, weights = None, None
            if regions:
                grams, masks, weights = self.region_targets(regions, c_rgb, params)
            else:
                grams = self.blend_grams(styles, w, h, params)
            run.timings["targets"] += time.monotonic() - t0
            if restored is not None:
                x0 = restored.solver["x"]  # a tiled scale restores its whole image itself
            elif x is not None:
                x0 = resize(x.astype(np.float32), w, h)
            else:
                x0 = self._init_image(params, c_rgb, styles, init_image, w, h, seed)
            side = plan.tile_side(w, h, params, si == len(scales) - 1, memory.budget(self.memory_limit))
            if restored is not None and restored.tiled is not None:
                side = restored.tiled.side
            while True:
                try:
                    if side is not None and regions:
                        raise MemoryError(f"{w}x{h} with masks would need tiles, which masks cannot use yet; "
                                          "ask for a smaller size or raise limits.memory / --memory")
                    if side is None:
                        x, final = self._whole(run, si, c_rgb, grams, x0, restored, masks, weights)
                    else:
                        x, final = self._tiled(run, si, c_rgb, grams, x0, side, restored)
                    break
                except OOM_ERRORS as exc:  # a smaller plan, never a dead job
                    smaller = plan.smaller_tile(w, h, side)
                    if smaller is None:
                        raise
                    run.notes.append(f"out of memory at {w}x{h} ({type(exc).__name__}); retried in "
                                     f"{smaller}px tiles")
                    side, restored = smaller, None
            if side is not None:
                run.notes.append(f"scale {si + 1} ({w}x{h}) refined in {side}px tiles")
        image = np.clip(x, 0, 255).astype(np.float32)
        if params.preserve_colors == "luminance":
            image = luminance_transfer(image, resize(content.rgb, *scales[-1].size))
        elif params.preserve_colors == "histogram":
            image = histogram_transfer(image, resize(content.rgb, *scales[-1].size))
        alpha = resize(content.alpha, *scales[-1].size) if content.alpha is not None else None
        run.timings["total"] = run.elapsed()
        return Result(image, alpha, seed, run.initial, final, run.history, run.iterations_done, run.evaluations,
                      run.stopped_by, {k: round(v, 3) for k, v in run.timings.items()}, [s.size for s in scales],
                      run.notes, run.precisions)

    def _whole(self, run: "_Run", si: int, c_rgb: np.ndarray, grams: list[np.ndarray], x0: np.ndarray,
               restored: Checkpoint | None, masks: list[np.ndarray] | None = None,
               weights: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, float]]:
        if weights is None:
            weights = self.loss_weights(c_rgb, grams, run.params)
        fg = self.objective(c_rgb, grams, run.params, weights, masks=masks)
        if run.temporal is not None and run.temporal.applies(c_rgb):  # a clip's later frame
            fg = run.temporal.wrap(fg, c_rgb)
        run.use(fg.precision)
        solver = make_solver(x0, fg, run.params)
        best, start = run.begin(solver, x0, restored)
        best = run.loop(si, solver, best, start, run.its[si], run.budget(si))
        return best.x, best.parts

    def _tiled(self, run: "_Run", si: int, c_rgb: np.ndarray, grams: list[np.ndarray], x0: np.ndarray, side: int,
               restored: Checkpoint | None) -> tuple[np.ndarray, dict[str, float]]:
        """Refine tile by tile (row-major) in two sweeps that share the iterations.

        A tile's Gram target is its own Gram plus what the whole image lacks, G_tile + (G* −
        Ḡ) (:func:`tiling.nudged`), with the whole image's loss weights: every tile takes
        an equal part of the correction and keeps the coarser scale's layout of the style.
        First sweep: Ḡ is measured when the sweep begins and held, so the first tiles take
        no more than the last. Second sweep: Ḡ follows every tile's moves (a
        :class:`tiling.StyleLedger`), so the sweep ends with the whole image on target.
        Both rules replaced worse ones, measured at 512 px on real weights: matching the
        style's own Grams made every tile a whole painting in small (loss 1.14× the
        untiled image's, swirls the untiled sky lacks); block-coordinate descent, where a
        tile's target is what the whole image lacks given every other region, let the first
        tiles take all of it (a smooth top-left corner; a lighter block at 1024 px).
        The second sweep's tiles are shifted half a tile (``tiling.windows(shifted=True)``):
        where the first sweep's tiles met, each pixel ends as a blend of two tiles'
        textures, fainter than either; the second sweep repaints those bands from inside.
        A frame of real neighbours gives a tile's features their true context, and its
        moves fade out across the borders it shares (:class:`tiling.Window`), so no pixel
        line is left to serve features on both sides (1-px seams).
        """
        h, w = c_rgb.shape[:2]
        params = run.params
        s_layers = tuple(n for n, _ in params.style_layers)
        sweeps = [tiling.windows(w, h, side), tiling.windows(w, h, side, shifted=True)]
        visits_of = [len(t) for t in sweeps]
        was = restored.tiled if restored is not None else None
        x_full = np.asarray(was.image if was is not None else x0, np.float64).copy()
        first = was.tile if was is not None else 0

        def measure(x: np.ndarray, frame: tiling.Frame) -> list[tuple[np.ndarray, int]]:
            return self._region_sums(x, frame, s_layers, params.pooling)

        ledger = None
        if was is not None:  # exactly as it was, for a bit-identical resume
            ledger = tiling.StyleLedger(measure, [a.copy() for a in was.sums], list(was.counts))
        weights = self.loss_weights(c_rgb, grams, params)
        budget_left = run.budget(si)
        t_scale = time.monotonic()
        finals: dict[int, dict[str, float]] = {}  # the last sweep's tiles' parts, by visit
        visits = sum(visits_of)
        per_visit = max(1, run.its[si] // len(sweeps))
        for g in range(first, visits):
            second = g >= visits_of[0]
            tile = sweeps[1][g - visits_of[0]] if second else sweeps[0][g]
            # a sweep begins: measure the whole image (a resume at that very tile brought its sums)
            if ledger is None or (g == visits_of[0] and g != first):
                ledger = tiling.StyleLedger.of(measure, x_full, sweeps[second])
            base = x_full[tile.region].copy()
            held = measure(base, tile.seen)
            tile_fg = self.objective(c_rgb[tile.region], tiling.nudged(held, ledger.deficit(grams)), params,
                                     weights, tile.seen)
            run.use(tile_fg.precision)
            solver = make_solver(base, tile.objective(tile_fg, base), params)
            best, start = run.begin(solver, base, restored if g == first else None)
            tile_budget = plan.visit_budget(budget_left, time.monotonic() - t_scale, visits - g)
            at = TileState(g, side, x_full, ledger.sums, ledger.counts)
            best = run.loop(si, solver, best, start, per_visit, tile_budget, at, visits)
            x_full[tile.region] = tile.moved(base, best.x)
            if second:
                ledger.update(held, x_full[tile.region], tile)
            if g == visits_of[0]:
                finals.clear()
            finals[g] = best.parts
        final = {k: float(np.mean([f[k] for f in finals.values() if k in f]))
                 for k in ("loss", "content", "style", "tv")}
        return x_full, {**final, "tiles": visits_of[0]}

    def _region_sums(self, x: np.ndarray, frame: tuple[int, int, int, int], layers: tuple[str, ...],
                     pooling: str) -> list[tuple[np.ndarray, int]]:
        """(ΣFᵀF, positions) per layer over ``x`` minus ``frame`` (features in full context)."""
        feats = self.features(np.asarray(x, np.float32), layers, pooling)
        out = []
        for n in layers:
            f = crop(feats[n], frame, layer_stride(n))[0]
            f = f.reshape(-1, f.shape[-1]).astype(np.float64)
            out.append((f.T @ f, f.shape[0]))
        return out

    @staticmethod
    def _init_image(params: Params, c_rgb: np.ndarray, styles, init_image: LoadedImage | None, w: int, h: int,
                    seed: int) -> np.ndarray:
        if params.init == "content":
            return c_rgb.copy()
        if params.init == "style":
            return resize(styles[0][0].rgb, w, h)
        if params.init == "noise":
            # The origin: a noisy blend in mean-subtracted space, noise uniform in ±20.
            rng = np.random.default_rng(seed)
            noise = rng.uniform(-20.0, 20.0, size=c_rgb.shape).astype(np.float32)
            mean = np.asarray((123.68, 116.779, 103.939), np.float32)
            return mean + (1 - params.noise_ratio) * (c_rgb - mean) + params.noise_ratio * noise
        if init_image is None:
            raise ValueError(f"init {params.init!r} needs init_image")
        return resize(init_image.rgb, w, h)


@dataclass(frozen=True)
class Best:
    """The lowest-loss image of one solver run so far: what a run returns, however it ends."""

    loss: float
    x: np.ndarray
    parts: dict[str, float]


@dataclass
class _Run:
    """One job's mutable state and callbacks, so the scale and tile loops stay small."""

    params: Params
    seed: int
    its: list[int]
    work: list[int]
    t_start: float
    elapsed_before: float
    history: list[dict[str, float]]
    iterations_done: int
    evaluations: int
    initial: dict[str, float]
    progress: Callable[[Progress], None] | None
    checkpoint: Callable[[Checkpoint], None] | None
    checkpoint_every: int
    should_stop: Callable[[], bool] | None
    preview: Callable[[np.ndarray, int], None] | None
    stopped_by: str = "iterations"
    temporal: Any = None  # a clip frame's temporal term, or None (Engine.stylize)
    notes: list[str] = field(default_factory=list)
    steady_seconds: float = 0.0  # time of steps that traced nothing, and the work they did:
    steady_work: float = 0.0  # the ETA's rate (a first step includes compiling; 100x too slow)
    timings: dict[str, float] = field(default_factory=lambda: {"targets": 0.0, "first_step": 0.0, "optimize": 0.0})
    precision: str = ""  # of the steps running now, e.g. bf16/graph
    precisions: list[str] = field(default_factory=list)  # every one used, in order

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def budget(self, si: int) -> float | None:
        """Seconds for scale ``si``: a coarse scale is a warm start, at most a quarter of what is left."""
        return plan.scale_budget(self.params.time_limit, self.elapsed(), si == len(self.its) - 1)

    def use(self, how: precision.Precision) -> None:
        """The precision the steps from here on run with (reported, and kept in checkpoints)."""
        self.precision = str(how)
        if self.precision not in self.precisions:
            self.precisions.append(self.precision)

    def begin(self, solver: Solver, x0: np.ndarray, restored: Checkpoint | None) -> tuple[Best, int]:
        """(best, first iteration) for a fresh or restored solver."""
        if restored is None:
            return Best(float("inf"), np.asarray(x0, np.float64), {}), 0
        made_on = restored.precision
        if made_on and made_on != self.precision:
            self.notes.append(f"resumed on {self.precision}; the checkpoint was made on {made_on}, so the run "
                              "continues, but not bit for bit as it would have")
        solver.load_state(restored.solver)
        return Best(restored.best_loss, restored.best_x, dict(restored.best_parts)), restored.iteration

    def snapshot(self, si: int, it: int, solver: Solver, best: Best, at: TileState | None) -> Checkpoint:
        """Everything needed to continue exactly here (``evaluations``: finished solvers only)."""
        return Checkpoint(si, it, self.seed, solver.state(), best.loss, best.x, best.parts, self.initial,
                          self.iterations_done, self.evaluations, self.elapsed(), list(self.history), self.precision,
                          at)

    def loop(self, si: int, solver: Solver, best: Best, start: int, n: int, budget: float | None,
             at: TileState | None = None, tiles: int = 0) -> Best:
        """Iterate ``solver`` up to ``n`` times; progress, previews, checkpoints, stop requests."""
        t_loop = time.monotonic()
        tile = at.tile + 1 if at is not None else 0
        it = start
        while it < n:
            if self.should_stop is not None and self.should_stop():
                if self.checkpoint is not None:
                    self.checkpoint(self.snapshot(si, it, solver, best, at))
                where = f", tile {tile}/{tiles}" if tiles else ""
                raise Interrupted(f"stopped at scale {si + 1}/{len(self.its)}{where}, iteration {it}")
            t_step = time.monotonic()
            self.timings.setdefault("first_iteration_start", t_step - self.t_start + self.elapsed_before)
            f, parts, xe = solver.step()
            if it != start:
                self.steady_seconds += time.monotonic() - t_step
                self.steady_work += self.work[si] / (n * max(tiles, 1))
            if it == start:
                self.timings["first_step"] += time.monotonic() - t_step  # includes tracing a new shape
                if solver.first is not None and solver.first["loss"] < best.loss:
                    best = Best(solver.first["loss"], best.x, solver.first)
                if si == 0 and not self.initial and solver.first is not None:
                    self.initial = solver.first
            it += 1
            self.iterations_done += 1
            if f < best.loss:
                best = Best(f, xe.copy(), parts)
            elapsed = self.elapsed()
            self.history.append({"scale": si + 1, **({"tile": tile} if tiles else {}), "iteration": it,
                                 "elapsed": round(elapsed, 3), **parts})
            if self.progress is not None:
                fraction = ((tile - 1) * n + it) / (tiles * n) if tiles else it / n
                done = sum(self.work[:si]) + self.work[si] * fraction
                eta = (sum(self.work) - done) * self.steady_seconds / self.steady_work if self.steady_work else None
                if self.params.time_limit is not None and eta is not None:
                    eta = min(eta, max(0.0, self.params.time_limit - elapsed))
                self.progress(Progress(si + 1, len(self.its), it, n, parts["loss"], parts["content"],
                                       parts["style"], parts["tv"], elapsed, eta, tile if tiles else 0, tiles))
            if self.preview is not None and self.params.preview_every and it % self.params.preview_every == 0:
                self.preview(np.asarray(at.image if at is not None else best.x, np.float32), it)
            if self.checkpoint is not None and self.checkpoint_every and it % self.checkpoint_every == 0:
                self.checkpoint(self.snapshot(si, it, solver, best, at))
            if solver.converged:
                self.stopped_by = "converged"
                break
            if budget is not None and time.monotonic() - t_loop >= budget:
                self.stopped_by = "time_limit"
                break
        self.evaluations += solver.evaluations
        self.timings["optimize"] += time.monotonic() - t_loop
        return best

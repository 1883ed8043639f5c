"""The best peers' techniques, each measured against nstd's default objective on real weights.

    python bench/techniques.py                       # 192 px, two pairs (~1 h on 2 AVX2 cores)
    python bench/techniques.py --variants baseline,w2 --pairs tubingen:starry_night

One harness runs every variant the same way (single scale, L-BFGS from the content, the
same iterations, the machine's fastest number format), so only the technique differs:

* ``baseline``: nstd's default objective (normalised content on conv4_2, Gram style on
  conv1_1..conv5_1, each layer 1 at the content, ``strength`` balance).
* ``tv``: total variation at weight 0.02, relative to the content's own. Note: the L1 TV of
  ``tf.image.total_variation``, not the engine's squared TV behind ``tv_weight``.
* ``style-scale-0.7`` / ``style-scale-1.5``: the style measured at that size relative to the content.
* ``layers-shallow`` / ``layers-deep``: style layer weights 0.3,0.3,0.2,0.1,0.1 and the reverse.
* ``w2``: the style as a Gaussian per layer, Wasserstein-2 between them (mean + covariance;
  crowsonkb/style-transfer-pytorch), in place of the Gram.
* ``histogram``: Risser et al. 2017: Gram plus a histogram term on conv1_1 and conv4_1,
  ‖F − match(F, style)‖², the match recomputed every step and held fixed for the gradient.
* ``average``: the image is the mean of the iterates of the second half (Polyak averaging).
* ``reflect``: conv1_1 sees the image reflect-padded instead of zero-padded.
* ``laplacian``: Li et al. 2017: plus ‖Lap(pool₄(x)) − Lap(pool₄(c))‖², relative to the
  content's, weighted like the content term (the engine's ``laplacian_weight: 1``).

Each variant runs at two strengths (the baseline at a third, 0.5, between them), so a
technique that only moves along the content/style trade-off does not look like a win: the
table's verdict is the variant's content preservation where its curve reaches the
baseline's style match at strength 0.5, minus the baseline's content there (positive =
keeps more content for the same style). Writes ``bench/out/techniques/``: one image per
run, ``techniques.json`` and a contact sheet (every variant at the higher strength). Scores
are ``nstd.metrics`` (not any variant's loss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from quality import IMAGES, REAL_WEIGHTS, content_at_style, real_weights  # noqa: E402
from sheet import sheet, tile  # noqa: E402

from nstd.engine import Engine  # noqa: E402
from nstd.engine import precision  # noqa: E402
from nstd.engine.backend import tf  # noqa: E402
from nstd.engine.losses import laplacian, laplacian_scale, laplacian_term  # noqa: E402
from nstd.engine.solvers import LBFGS  # noqa: E402
from nstd.engine.vgg import gram  # noqa: E402
from nstd.images import fit_size, load_image, resize, save_image  # noqa: E402
from nstd.metrics import Judge  # noqa: E402
from nstd.params import strength_weights  # noqa: E402

STYLE = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
CONTENT = "conv4_2"
VARIANTS = {
    "baseline": {},
    "tv": {"tv": 0.02},
    "style-scale-0.7": {"style_scale": 0.7},
    "style-scale-1.5": {"style_scale": 1.5},
    "layers-shallow": {"layer_weights": (0.3, 0.3, 0.2, 0.1, 0.1)},
    "layers-deep": {"layer_weights": (0.1, 0.1, 0.2, 0.3, 0.3)},
    "w2": {"style_loss": "w2"},
    "histogram": {"histogram": ("conv1_1", "conv4_1")},
    "average": {"average": True},
    "reflect": {"reflect": True},
    "laplacian": {"laplacian": 1.0},
}


def moments(f: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and covariance of a layer's activations over positions."""
    flat = tf.reshape(f, (-1, tf.shape(f)[-1]))
    mean = tf.reduce_mean(flat, 0)
    centred = flat - mean
    return mean, tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(flat)[0], tf.float32)


def sqrtm(c: tf.Tensor) -> tf.Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    vals, vecs = tf.linalg.eigh(c)
    return tf.matmul(vecs * tf.sqrt(tf.maximum(vals, 0.0))[None, :], vecs, transpose_b=True)


def w2(f: tf.Tensor, target: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tf.Tensor:
    """Wasserstein-2 distance² between Gaussians: ‖μ−μₛ‖² + tr(Σ + Σₛ − 2(Σₛ^½ Σ Σₛ^½)^½).

    The trace of the root is the sum of the roots of the eigenvalues: their gradient is
    stable where a covariance is rank-deficient (deep layers of small images), unlike the
    gradient of a full matrix root (as crowsonkb's implementation does it)."""
    mean_s, cov_s, root_s = target
    mean, cov = moments(f)
    cross = tf.matmul(tf.matmul(root_s, cov), root_s)
    roots = tf.sqrt(tf.maximum(tf.linalg.eigvalsh(0.5 * (cross + tf.transpose(cross))), 1e-4))
    return tf.reduce_sum(tf.square(mean - mean_s)) + tf.linalg.trace(cov + cov_s) - 2.0 * tf.reduce_sum(roots)


def histogram_match(f: tf.Tensor, sorted_style: tf.Tensor) -> tf.Tensor:
    """Each channel of ``f`` given the style's distribution, keeping its ranks (Risser et al.)."""
    flat = tf.reshape(f, (-1, tf.shape(f)[-1]))
    n = tf.shape(flat)[0]
    idx = tf.cast(tf.round(tf.linspace(0.0, tf.cast(tf.shape(sorted_style)[0] - 1, tf.float32), n)), tf.int32)
    quantiles = tf.gather(sorted_style, idx)  # (n, C): the style's values at n evenly spaced ranks
    ranks = tf.argsort(tf.argsort(flat, axis=0), axis=0)
    matched = tf.gather(tf.transpose(quantiles), tf.transpose(ranks), batch_dims=1)
    return tf.reshape(tf.transpose(matched), tf.shape(f))


class Harness:
    """One variant's objective on one pair at one size, terms normalised like nstd's default."""

    def __init__(self, engine: Engine, content: np.ndarray, style: np.ndarray, variant: dict, strength: float,
                 dtype) -> None:
        self.v, self.vgg, self.dtype = variant, engine.vgg, dtype
        self.layers = STYLE + (CONTENT,)
        c = tf.constant(content[None], tf.float32)
        s = tf.constant(style[None], tf.float32)
        own, sty = self.features(c), self.features(s)
        self.content_target = own[CONTENT]
        self.grams = {n: gram(sty[n]) for n in STYLE}
        self.gauss = {}
        if variant.get("style_loss") == "w2":
            for n in STYLE:
                mean, cov = moments(sty[n])
                self.gauss[n] = (mean, cov, sqrtm(cov))
        self.sorted = {n: tf.sort(tf.reshape(sty[n], (-1, sty[n].shape[-1])), axis=0)
                       for n in variant.get("histogram", ())}
        self.lap_target = laplacian(c)
        wc, ws = strength_weights(strength)
        lw = variant.get("layer_weights", (0.2,) * 5)
        self.scales = {"content": 1.0 / float(tf.reduce_mean(tf.square(self.content_target))),
                       "lap": laplacian_scale(content),
                       "tv": 1.0 / float(tf.image.total_variation(c)[0] + 1e-6)}
        self.weights = {"content": wc, "tv": variant.get("tv", 0.0), "lap": wc * variant.get("laplacian", 0.0)}
        # every style term reads 1 at the content image, like nstd's default
        for j, n in enumerate(STYLE):
            self.weights[n] = ws * lw[j] / max(float(self.style_term(n, own[n])), 1e-12)
            if n in self.sorted:
                self.weights["hist-" + n] = ws * lw[j] / max(float(self.hist_term(n, own[n])), 1e-12)
        self.step = tf.function(self._step)

    def features(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.v.get("reflect"):
            return self.vgg.features(x, self.layers, "avg", self.dtype, first_padding="REFLECT")
        return self.vgg.features(x, self.layers, "avg", self.dtype)

    def style_term(self, n: str, f: tf.Tensor) -> tf.Tensor:
        if n in self.gauss:
            return w2(f, self.gauss[n])
        return tf.reduce_sum(tf.square(gram(f) - self.grams[n]))

    def hist_term(self, n: str, f: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.square(f - tf.stop_gradient(histogram_match(f, self.sorted[n]))))

    def _step(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = self.features(x)
            w = self.weights
            total = w["content"] * self.scales["content"] * tf.reduce_mean(tf.square(f[CONTENT] - self.content_target))
            for n in STYLE:
                total += w[n] * self.style_term(n, f[n])
                if n in self.sorted:
                    total += w["hist-" + n] * self.hist_term(n, f[n])
            if w["tv"]:
                total += w["tv"] * self.scales["tv"] * tf.image.total_variation(x)[0]
            if w["lap"]:
                total += w["lap"] * self.scales["lap"] * laplacian_term(x, self.lap_target)
        return total, tape.gradient(total, x)

    def fg(self, x: np.ndarray):
        total, grad = self.step(tf.constant(x[None], tf.float32))
        return float(total), grad.numpy()[0].astype(np.float64), {"loss": float(total)}

    def solve(self, x0: np.ndarray, iterations: int) -> np.ndarray:
        solver = LBFGS(x0, self.fg, True, 8)
        mean, count = np.zeros_like(solver.x), 0
        for i in range(iterations):
            solver.step()
            if self.v.get("average") and i >= iterations // 2:
                mean, count = mean + solver.x, count + 1
            if solver.converged:
                break
        return (mean / count if count else solver.x).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--pairs", default="tubingen:starry_night,brad_pitt:the_scream")
    ap.add_argument("--strengths", default="0.4,0.6")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--iterations", type=int, default=70)
    ap.add_argument("--weights", default=str(REAL_WEIGHTS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "techniques"))
    args = ap.parse_args()
    opened = real_weights(args, "techniques")
    if opened is None:
        return 2
    weights, out = opened
    engine = Engine(weights)
    dtype = tf.bfloat16 if "bf16" in precision.supported_computes() else tf.float32
    print(f"weights: {weights.source} (sha256 {weights.sha256[:16]}…); {args.size} px; convolutions in {dtype.name}")
    strengths = [float(s) for s in args.strengths.split(",")]
    rows, cells = [], []
    print(f"variant images at strength {max(strengths)} on the sheet")
    for spec in args.pairs.split(","):
        c_name, s_name = spec.split(":")
        pair = f"{c_name}+{s_name}"
        content, style = load_image(IMAGES[c_name]), load_image(IMAGES[s_name])
        w, h = fit_size(*content.size, args.size)
        c_rgb = resize(content.rgb, w, h)
        judge = Judge(engine, c_rgb, resize(style.rgb, w, h))
        line = [tile(c_rgb, 180, "content"), tile(style.rgb, 180, "style")]
        for name in args.variants.split(","):
            variant = VARIANTS[name]
            sw, sh = fit_size(*style.size, max(1, round(max(w, h) * variant.get("style_scale", 1.0))))
            s_rgb = resize(style.rgb, sw, sh)
            for s in sorted(set(strengths) | ({0.5} if name == "baseline" else set())):
                t0 = time.monotonic()
                image = Harness(engine, c_rgb, s_rgb, variant, s, dtype).solve(c_rgb.copy(), args.iterations)
                path = out / f"{pair}-{name}-{s}.png"
                save_image(path, image)
                row = {"pair": pair, "variant": name, "strength": s, "seconds": round(time.monotonic() - t0, 1),
                       **judge(image).as_dict()}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if s == max(strengths):
                    line.append(tile(image, 180, f"{name}\ncontent {row['content']:.2f} style {row['style']:.2f}"))
        cells.append(line)
        sheet(cells, out / f"techniques-{args.size}.png")
        (out / "techniques.json").write_text(json.dumps(rows, indent=1))
    print(verdicts(rows))
    return 0


def verdicts(rows: list[dict]) -> str:
    """Per variant and pair: content kept at the baseline's style match (strength 0.5), minus the baseline's."""
    lines = ["variant | " + " | ".join(sorted({r["pair"] for r in rows})) + " | mean   (* extrapolated)"]
    pairs = sorted({r["pair"] for r in rows})
    for name in dict.fromkeys(r["variant"] for r in rows):
        deltas = []
        for pair in pairs:
            base = next((r for r in rows if r["pair"] == pair and r["variant"] == "baseline" and r["strength"] == 0.5),
                        None)
            curve = [r for r in rows if r["pair"] == pair and r["variant"] == name]
            at, mark = (content_at_style(curve, base["style"]), "") if base and len(curve) > 1 else (None, "")
            if at is None and base and len(curve) > 1:  # past the curve's ends: the line through its two nearest points
                pts = sorted((r["style"], r["content"]) for r in curve)
                (s0, c0), (s1, c1) = pts[:2] if base["style"] < pts[0][0] else pts[-2:]
                at, mark = (c0 + (c1 - c0) * (base["style"] - s0) / (s1 - s0), "*") if s1 > s0 else (None, "")
            deltas.append(None if at is None else (at - base["content"], mark))
        known = [d for d, _ in (x for x in deltas if x is not None)]
        cells = ["—" if d is None else f"{d[0]:+.3f}{d[1]}" for d in deltas]
        lines.append(f"{name} | " + " | ".join(cells) + f" | {np.mean(known):+.3f}" if known else f"{name} | —")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

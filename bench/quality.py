"""Picture quality on real VGG-19 weights: contact sheets and a table, for fixed pairs.

    python bench/quality.py                      # 512 px, the default pairs (hours on 2 cores)
    python bench/quality.py --size 256 --pairs tubingen:starry_night,garden:picasso

For each pair, one row of the sheet: content | style | the origin recipe | the TF tutorial |
jcjohnson/neural-style's defaults | nstd's default | nstd's default with a time limit of a
third of the jcjohnson run's time. A second sheet is the strength strip. Every image
carries two numbers that are not any recipe's loss (``nstd.metrics``): content
preservation (blurred-luminance SSIM against the content, 1 = the content) and style
match (0 = no closer to the style than the content was, 1 = the style).

The other tools' recipes, in nstd's parameters (our losses: content Σ(F−P)²/(4·N·C),
style Σ(G−A)²/(4C²) with G = FᵀF/N, TV Σ(dx²+dy²)/(3·H·W)):

* **origin**: ``preset: origin`` (Adam lr 2 from noise, 200 steps, alpha 10, beta 40).
* **TF tutorial** ("Neural style transfer", tensorflow.org): content conv5_2, style
  conv1_1..conv5_1, loss 1e4·mean((F−P)²) + 1e-2·mean over layers of mean((G−A)²), Adam
  lr 0.02, β1 0.99, ε 0.1 on [0, 1] pixels, 1000 steps, content init, clipped. In our
  units: content_weight 4e4, each style layer 1e-2/5·4 = 0.008. (Its later TV section,
  an L1 TV, is left out.)
* **jcjohnson/neural-style** defaults: content relu4_2 weight 5 (MSE), style relu1_1..
  relu5_1 weight 100 each on Grams divided by C·H·W (MSE), TV 1e-3, L-BFGS 1000
  iterations (history 100), unclipped, from near-zero noise, max pooling, 512 px. In our
  units: content_weight 20; style layer weight 400/C² (C the layer's channels); tv_weight
  1.5e-3·H·W; init noise with noise_ratio 1 (his noise has σ 0.001 around the mean pixel,
  ours is uniform ±20 around it).
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

from sheet import sheet, tile  # noqa: E402

from nstd.engine import Engine, load_weights  # noqa: E402
from nstd.images import fit_size, load_image, resize, save_image  # noqa: E402
from nstd.metrics import Judge  # noqa: E402
from nstd.params import parse_set, resolve  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_WEIGHTS = SHARED / "weights" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGES = {
    "tubingen": SHARED / "data" / "images" / "tubingen.jpg",
    "brad_pitt": SHARED / "data" / "images" / "brad_pitt.jpg",
    "garden": SHARED / "data" / "seed" / "japanese_garden.jpg",
    "starry_night": SHARED / "data" / "images" / "starry_night.jpg",
    "the_scream": SHARED / "data" / "images" / "the_scream.jpg",
    "picasso": SHARED / "data" / "seed" / "picasso_selfportrait.jpg",
    "frida_kahlo": SHARED / "data" / "images" / "frida_kahlo.jpg",
    "seated_nude": SHARED / "data" / "images" / "seated-nude.jpg",
}
DEFAULT_PAIRS = "tubingen:starry_night,garden:picasso,brad_pitt:the_scream,tubingen:seated_nude"
CHANNELS = {"conv1_1": 64, "conv2_1": 128, "conv3_1": 256, "conv4_1": 512, "conv5_1": 512}


def origin(w: int, h: int) -> dict:
    return {"preset": "origin"}


def tutorial(w: int, h: int) -> dict:
    return {"preset": "origin", "solver": "tutorial", "content_layers": {"conv5_2": 1.0},
            "style_layers": {n: 0.008 for n in CHANNELS}, "content_weight": 4e4, "style_weight": 1.0}


def jcjohnson(w: int, h: int) -> dict:
    return {"preset": "origin", "solver": "fast", "optimizer": "lbfgs", "lbfgs_memory": 100, "clip": False,
            "init": "noise", "noise_ratio": 1.0, "scales": [1.0], "coarse_iterations": None, "iterations": 1000,
            "pooling": "max", "content_layers": {"conv4_2": 1.0}, "content_weight": 20.0,
            "style_layers": {n: 400.0 / c**2 for n, c in CHANNELS.items()}, "style_weight": 1.0,
            "tv_weight": 1.5e-3 * w * h}


def default(w: int, h: int) -> dict:
    return {}


RECIPES = {"origin": origin, "tutorial": tutorial, "jcjohnson": jcjohnson, "default": default}


class Bench:
    """One engine, one output folder; runs a recipe on a pair and scores the result."""

    def __init__(self, engine: Engine, size: int, out: Path, earlier: dict | None = None) -> None:
        self.engine, self.size, self.out = engine, size, out
        self.earlier = earlier or {}  # (pair, recipe) -> row of an earlier run into the same folder

    def run(self, pair: str, content, style, label: str, raw: dict) -> dict:
        row = self.earlier.get((pair, label))
        if row is not None and (self.out / row["image"]).is_file():
            print(json.dumps({**row, "reused": True}), flush=True)
            return row
        params = resolve({**raw, "size": self.size, "seed": 1})
        t0 = time.monotonic()
        result = self.engine.stylize(content, [(style, 1.0)], params)
        seconds = time.monotonic() - t0
        h, w = result.image.shape[:2]
        scores = Judge(self.engine, resize(content.rgb, w, h), resize(style.rgb, w, h))(result.image)
        path = self.out / f"{pair}-{label}.png"
        save_image(path, result.image)
        row = {"pair": pair, "recipe": label, "seconds": round(seconds, 1), "iterations": result.iterations,
               **scores.as_dict(), "image": path.name}
        print(json.dumps(row), flush=True)
        return row


def content_at_style(strip: list[dict], style: float) -> float | None:
    """Content preservation of the strength curve where its style match equals ``style``
    (linear between neighbouring strengths); None outside the curve's range."""
    pts = sorted((r["style"], r["content"]) for r in strip)
    for (s0, c0), (s1, c1) in zip(pts, pts[1:]):
        if s0 <= style <= s1 and s1 > s0:
            return c0 + (c1 - c0) * (style - s0) / (s1 - s0)
    return None


def real_weights(args: argparse.Namespace, prog: str):
    """(weights, output folder) for a bench that judges pictures; None (said why) without the real file."""
    if not Path(args.weights).is_file():
        print(f"{prog}: the real VGG-19 weights are not at {args.weights}", file=sys.stderr)
        return None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return load_weights(args.weights), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help="content:style,… from: " + ", ".join(IMAGES))
    ap.add_argument("--strengths", default="0.2,0.35,0.5,0.65,0.8")
    ap.add_argument("--recipes", default="origin,tutorial,jcjohnson,default")
    ap.add_argument("--weights", default=str(REAL_WEIGHTS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "quality"))
    ap.add_argument("--reuse", action="store_true",
                    help="take runs already in --out's table (same pair and recipe) instead of running them again, "
                         "so a long run stopped part way can go on")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a parameter for nstd's own runs (default and strip), e.g. laplacian_weight=0")
    args = ap.parse_args()
    ours = parse_set(args.set)
    opened_weights = real_weights(args, "quality")
    if opened_weights is None:
        return 2
    weights, out = opened_weights
    print(f"weights: {weights.source} ({weights.format}, sha256 {weights.sha256[:16]}…); size {args.size} px")
    table_path = out / f"quality-{args.size}.json"
    earlier = {(r["pair"], r["recipe"]): r for r in json.loads(table_path.read_text()) if r.get("image")} \
        if args.reuse and table_path.is_file() else {}
    bench = Bench(Engine(weights), args.size, out, earlier)
    rows, strips, table = [], [], []
    for pair_spec in args.pairs.split(","):
        c_name, s_name = pair_spec.split(":")
        pair = f"{c_name}+{s_name}"
        content, style = load_image(IMAGES[c_name]), load_image(IMAGES[s_name])
        w, h = fit_size(*content.size, args.size)
        runs = {name: bench.run(pair, content, style, name,
                                {**RECIPES[name](w, h), **(ours if name == "default" else {})})
                for name in filter(None, args.recipes.split(","))}
        default_run = runs.get("default")
        if "jcjohnson" in runs:
            third = max(1.0, runs["jcjohnson"]["seconds"] / 3)
            # a run that ends before its limit is the unlimited run: reuse it rather than spend the time twice
            runs["default T/3"] = (dict(default_run, recipe="default-t3", time_limit=round(third, 1))
                                   if default_run and default_run["seconds"] < third
                                   else bench.run(pair, content, style, "default-t3", {**ours, "time_limit": third}))
        default_strength = resolve({**ours, "size": args.size}).strength
        strip = [dict(default_run, recipe=f"strength-{s}")
                 if default_run and float(s) == default_strength
                 else bench.run(pair, content, style, f"strength-{s}", {**ours, "strength": float(s)})
                 for s in args.strengths.split(",")]
        table.extend(runs.values())
        table.extend(strip)
        height = 200
        rows.append([tile(content.rgb, height, "content"), tile(style.rgb, height, "style")]
                    + [tile(opened(out, r), height, f"{name} {r['seconds']:.0f}s\n"
                            f"content {r['content']:.2f} style {r['style']:.2f}") for name, r in runs.items()])
        strips.append([tile(content.rgb, height, "content")]
                      + [tile(opened(out, r), height, f"strength {r['recipe'].split('-')[1]}\n"
                              f"content {r['content']:.2f} style {r['style']:.2f}") for r in strip]
                      + [tile(style.rgb, height, "style")])
        if "jcjohnson" in runs:
            j = runs["jcjohnson"]
            kept = content_at_style(strip, j["style"])
            verdict = "outside the strip's range" if kept is None else (
                f"nstd keeps {'more' if kept > j['content'] else 'less'} content ({kept:.3f} vs {j['content']:.3f})")
            print(f"{pair}: at jcjohnson's style match {j['style']:.3f}, {verdict}", flush=True)
            table.append({"pair": pair, "recipe": "curve at jcjohnson's style",
                          "content": None if kept is None else round(kept, 4), "style": j["style"]})
        # after every pair, so a long run stopped early still leaves its sheets and table
        sheet(rows, out / f"recipes-{args.size}.png")
        sheet(strips, out / f"strength-{args.size}.png")
        table_path.write_text(json.dumps(table, indent=1))
        print(f"sheets: {out}/recipes-{args.size}.png, {out}/strength-{args.size}.png", flush=True)
    return 0


def opened(out: Path, row: dict):
    from PIL import Image

    return Image.open(out / row["image"])


if __name__ == "__main__":
    raise SystemExit(main())

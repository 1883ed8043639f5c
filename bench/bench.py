"""nstd benchmarks: per-step speed and time-to-quality, on this machine, in one run.

    python bench/bench.py                 # 256 and 512 px, random full-width VGG-19
    python bench/bench.py --weights imagenet-vgg-verydeep-19.mat --sizes 256 512

Prints, per size: seconds per VGG step, achieved GFLOP/s (forward to the deepest
layer used + input gradient) next to the peak rate of a large 3×3 convolution in the
same TensorFlow build, and the time each recipe needs to reach the origin recipe's
final loss on the origin's objective (same weights, images, size and seed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nstd.engine import Engine, Interrupted, load_weights  # noqa: E402
from nstd.engine.weights import IMAGENET_MEAN_RGB, VGGWeights  # noqa: E402
from nstd.images import fit_size, load_image, resize  # noqa: E402
from nstd.params import resolve  # noqa: E402

SEED = REPO.parent / "shared" / "data" / "seed"


def random_weights() -> VGGWeights:
    from tests.weightfiles import random_network

    net = random_network(0)
    return VGGWeights({k: v[0] for k, v in net.items()}, {k: v[1] for k, v in net.items()},
                      np.asarray(IMAGENET_MEAN_RGB, np.float32), source="random full-width VGG-19 (seed 0)",
                      format="random")


def peak_conv_gflops(size: int = 256, channels: int = 256, repeats: int = 5) -> float:
    """The best this TF build does on one large 3×3 conv (XLA, as the engine runs)."""
    x = tf.random.normal([1, size, size, channels])
    k = tf.random.normal([3, 3, channels, channels])
    f = tf.function(lambda x: tf.nn.conv2d(x, k, 1, "SAME"), jit_compile=True)
    f(x).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(x).numpy()
        best = min(best, time.perf_counter() - t)
    return 2.0 * size * size * 9 * channels * channels / best / 1e9


def step_speed(weights: VGGWeights, content, style, size: int, repeats: int) -> tuple[float, float]:
    engine = Engine(weights)
    params = resolve({"preset": "origin", "size": size})
    w, h = fit_size(*content.size, size)
    c = resize(content.rgb, w, h)
    fg = engine.objective(c, [(style, 1.0)], params)
    x = c.astype(np.float64)
    fg(x)  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fg(x)
        times.append(time.perf_counter() - t)
    sec = float(np.median(times))
    deepest = max((n for n, _ in params.content_layers + params.style_layers), key=lambda n: (n[4], n[6]))
    return sec, engine.vgg.step_flops(h, w, deepest) / sec / 1e9


def run_recipe(weights: VGGWeights, content, style, raw: dict, target: float | None, cap: float | None):
    """Run one recipe on a fresh engine (compile time counts). Returns (result-ish dict).

    ``target``: stop as soon as a full-resolution iterate reaches this loss.
    """
    engine = Engine(weights)
    params = resolve({**raw, **({"time_limit": cap} if cap else {})})
    n_scales = len(Engine._plan(*fit_size(*content.size, params.size), params))
    hit: dict[str, float] = {}

    def progress(p) -> None:
        if target is not None and p.scale == n_scales and p.loss <= target and "t" not in hit:
            hit["t"] = p.elapsed

    t0 = time.perf_counter()
    try:
        r = engine.stylize(content, [(style, 1.0)], params, progress=progress, should_stop=lambda: "t" in hit)
        final, iters = r.final["loss"], r.iterations
    except Interrupted:
        final, iters = target, None
    wall = time.perf_counter() - t0
    return {"wall": wall, "final": final, "reached": hit.get("t"), "iterations": iters}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a real weights file (default: random full-width VGG-19)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-recipes", action="store_true", help="only the per-step numbers")
    args = ap.parse_args()
    if not (SEED / "japanese_garden.jpg").is_file():
        print(f"bench: the origin's images are not at {SEED}", file=sys.stderr)
        return 1
    weights = load_weights(args.weights) if args.weights else random_weights()
    content = load_image(SEED / "japanese_garden.jpg")
    style = load_image(SEED / "picasso_selfportrait.jpg")
    gpus = tf.config.list_logical_devices("GPU")
    print(f"device: {'GPU ' + gpus[0].name if gpus else 'CPU'} ({os.cpu_count()} cores), TF {tf.__version__}")
    print(f"weights: {weights.source}")
    peak = peak_conv_gflops()
    print(f"peak 3x3 conv (256x256x256->256, XLA): {peak:.1f} GFLOP/s")
    print()
    print(f"{'size':>6} {'s/iter':>8} {'GFLOP/s':>8} {'% peak':>7}")
    for size in args.sizes:
        sec, gflops = step_speed(weights, content, style, size, args.repeats)
        print(f"{size:>6} {sec:>8.3f} {gflops:>8.1f} {100 * gflops / peak:>6.0f}%", flush=True)
    if args.skip_recipes:
        return 0
    print()
    print("time to reach the origin recipe's final loss (origin objective, seed 1, same size):")
    print(f"{'size':>6} {'recipe':<28} {'seconds':>8} {'final loss':>11} {'speed-up':>9}")
    for size in args.sizes:
        origin = run_recipe(weights, content, style, {"preset": "origin", "size": size, "seed": 1}, None, None)
        target = origin["final"]
        print(f"{size:>6} {'origin (Adam, 200 it)':<28} {origin['wall']:>8.1f} {target:>11.5g} {'1.0x':>9}",
              flush=True)
        for name, raw in (("default preset (fast)", {"size": size, "seed": 1}),
                          ("origin objective + fast", {"preset": "origin", "solver": "fast", "size": size,
                                                       "seed": 1})):
            r = run_recipe(weights, content, style, raw, target, origin["wall"])
            if r["reached"] is not None:
                print(f"{size:>6} {name:<28} {r['reached']:>8.1f} {'≤ target':>11} "
                      f"{origin['wall'] / r['reached']:>8.1f}x", flush=True)
            else:
                print(f"{size:>6} {name:<28} {'not reached':>8} {r['final']:>11.5g} {'-':>9}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

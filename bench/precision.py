"""Number formats and compilers on this machine, side by side in one run (real VGG-19 weights).

    python bench/precision.py [--sizes 256,512,1024] [--quality-size 512]

1. The peak rate of one 3×3 convolution (128×128, 256→256 channels) for each compiler and
   format this machine has.
2. The engine's default-objective step (seed pair) for each candidate at each size, the
   step ``auto`` chose, and its speed-up over fp32 with XLA. Steps alternate between
   candidates, best of 5 after compiling.
3. Time to quality: the default job (seed pair, seed 1) with fp32/XLA and with ``auto``;
   the final losses of the saved images on the fp32 objective, and the wall times
   (measuring the candidates is part of auto's time, as on a fresh machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from quality import REAL_WEIGHTS, SHARED  # noqa: E402

from nstd.engine import Engine, load_weights, precision  # noqa: E402
from nstd.engine.backend import tf  # noqa: E402
from nstd.images import fit_size, load_image, resize  # noqa: E402
from nstd.params import resolve  # noqa: E402


def peak(compute: str, compiler: str, repeats: int = 5) -> float:
    dtype = precision.DTYPES[compute]
    x = tf.cast(tf.random.normal([1, 128, 128, 256]), dtype)
    k = tf.cast(tf.random.normal([3, 3, 256, 256]) * 0.05, dtype)
    f = tf.function(lambda x: tf.nn.conv2d(x, k, 1, "SAME"), jit_compile=compiler == "xla")
    f(x).numpy()
    best = min(_timed(lambda: f(x).numpy()) for _ in range(repeats))
    return 2.0 * 128 * 128 * 9 * 256 * 256 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def steps(weights, content, style, size: int, cache: Path) -> None:
    params = resolve({"size": size, "seed": 1})
    w, h = fit_size(*content.size, size)
    c = resize(content.rgb, w, h)
    fgs = {}
    for how in precision.candidates("auto", "auto"):
        e = Engine(weights, compute=how.compute, compiler=how.compiler)
        grams = e.blend_grams([(style, 1.0)], w, h, params)
        fgs[str(how)] = e.objective(c, grams, params, e.loss_weights(c, grams, params))
    x = c.astype(np.float64)
    for fg in fgs.values():
        fg(x)  # compile
    times = {k: [] for k in fgs}
    for _ in range(5):  # alternate, so drift on a shared machine hits every candidate alike
        for k, fg in fgs.items():
            times[k].append(_timed(lambda: fg(x)))
    auto = Engine(weights, choices=precision.ChoiceCache(cache))
    grams = auto.blend_grams([(style, 1.0)], w, h, params)
    chosen = str(auto.objective(c, grams, params, auto.loss_weights(c, grams, params)).precision)
    base = min(times["fp32/xla"])
    cells = " | ".join(f"{min(t):.3f} s" for t in times.values())
    print(f"| {w}×{h} | {cells} | **{chosen}** | {base / min(times[chosen]):.2f}× |", flush=True)


def to_quality(weights, content, style, size: int, cache: Path) -> None:
    """Both runs' numbers, and a sheet of the two images side by side (bench/out/precision)."""
    from sheet import sheet, tile

    params = resolve({"size": size, "seed": 1})
    judge = Engine(weights, compute="fp32", compiler="xla")
    tiles = [tile(content.rgb, 300, "content"), tile(style.rgb, 300, "style")]
    for label, options in (("fp32/xla", {"compute": "fp32", "compiler": "xla"}), ("auto", {})):
        engine = Engine(weights, choices=precision.ChoiceCache(cache / label), **options)
        t0 = time.monotonic()
        r = engine.stylize(content, [(style, 1.0)], params)
        seconds = time.monotonic() - t0
        saved = np.rint(np.clip(r.image, 0, 255))  # as written to disk
        loss = judge.evaluate(saved, content, [(style, 1.0)], params)["loss"]
        print(f"| {label} ({', '.join(r.precision)}) | {seconds:.0f} s | {loss:.5g} |", flush=True)
        tiles.append(tile(saved, 300, f"{label}: {', '.join(r.precision)}\n{seconds:.0f} s, loss {loss:.5g}"))
    out = Path(__file__).resolve().parent / "out" / "precision" / f"quality-{size}.png"
    print(f"sheet: {sheet([tiles], out)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--quality-size", type=int, default=512)
    ap.add_argument("--sections", default="peak,steps,quality")
    args = ap.parse_args()
    if not REAL_WEIGHTS.is_file():
        print(f"bench: no real weights at {REAL_WEIGHTS}", file=sys.stderr)
        return 2
    weights = load_weights(str(REAL_WEIGHTS))
    flags = precision.cpu_flags()
    print(f"machine: {os.cpu_count()} CPUs, bf16 units: {bool({'avx512_bf16', 'amx_bf16'} & flags)}, "
          f"GPU: {precision.gpu_capability()}, TF {tf.__version__}; formats here: {precision.supported_computes()}")
    content, style = load_image(SHARED / "data" / "seed" / "japanese_garden.jpg"), \
        load_image(SHARED / "data" / "seed" / "picasso_selfportrait.jpg")
    cache = Path(tempfile.mkdtemp(prefix="nstd-precision-"))
    sections = args.sections.split(",")
    if "peak" in sections:
        print("\n| compiler | " + " | ".join(precision.supported_computes()) + " |")
        for compiler in ("xla", "graph"):
            print(f"| {compiler} | " + " | ".join(f"{peak(c, compiler):.0f} GFLOP/s"
                                               for c in precision.supported_computes()) + " |", flush=True)
    if "steps" in sections:
        names = [str(h) for h in precision.candidates("auto", "auto")]
        print("\n| size | " + " | ".join(names) + " | auto chose | vs fp32/xla |")
        for size in map(int, args.sizes.split(",")):
            steps(weights, content, style, size, cache / f"steps-{size}")
    if "quality" in sections:
        print(f"\n| run at {args.quality_size} px | wall time | final loss (saved image, fp32 objective) |")
        to_quality(weights, content, style, args.quality_size, cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

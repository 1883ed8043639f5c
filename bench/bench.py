"""nstd benchmarks: per-step speed and time-to-quality, on this machine, in one run.

    python bench/bench.py                 # 256 and 512 px, random full-width VGG-19
    python bench/bench.py --weights imagenet-vgg-verydeep-19.mat --sizes 256 512

Prints, per size: seconds per VGG step, achieved GFLOP/s (forward to the deepest
layer used + input gradient) next to the peak rate of a large 3×3 convolution in the
same TensorFlow build, and the time each recipe needs to reach the origin recipe's
final loss, on the origin's objective and on nstd's default one (same weights, images,
size and seed).
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

from nstd.engine import Engine, Interrupted, load_weights, plan  # noqa: E402
from nstd.engine.weights import IMAGENET_MEAN_RGB, VGGWeights  # noqa: E402
from nstd.images import fit_size, load_image, resize  # noqa: E402
from nstd.params import resolve  # noqa: E402

SEED = REPO.parent / "shared" / "data" / "seed"


REAL_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / \
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


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


def step_speed(weights: VGGWeights, content, style, size: int, repeats: int) -> tuple[float, float, float]:
    """(best, median seconds, FLOPs) of one origin-objective step; best as for the peak conv."""
    engine = Engine(weights, compute="fp32", compiler="xla")  # the table is fp32 XLA; bench/precision.py has the rest
    params = resolve({"preset": "origin", "size": size})
    w, h = fit_size(*content.size, size)
    c = resize(content.rgb, w, h)
    grams = engine.blend_grams([(style, 1.0)], w, h, params)
    fg = engine.objective(c, grams, params, engine.loss_weights(c, grams, params))
    x = c.astype(np.float64)
    fg(x)  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fg(x)
        times.append(time.perf_counter() - t)
    layers = tuple(n for n, _ in params.content_layers + params.style_layers)
    flops = engine.vgg.step_flops(h, w, layers, tuple(n for n, _ in params.style_layers))
    return min(times), float(np.median(times)), flops


def run_recipe(weights: VGGWeights, content, style, raw: dict, target: float | None, cap: float | None,
               **engine_options):
    """Run one recipe on a fresh engine (compile time counts). Returns (result-ish dict):
    ``final`` is the loss of the saved image; ``wall`` the run's own time, scoring excluded.

    ``target``: stop as soon as a full-resolution iterate reaches this loss (the fast
    solver's iterates are clipped to 0–255, so their loss is the saved image's but for rounding).
    """
    engine = Engine(weights, **{"compute": "fp32", "compiler": "xla", **engine_options})
    params = resolve({**raw, **({"time_limit": cap} if cap else {})})
    n_scales = len(plan.scales(*fit_size(*content.size, params.size), params))
    hit: dict[str, float] = {}

    def progress(p) -> None:
        if target is not None and p.scale == n_scales and p.loss <= target and "t" not in hit:
            hit["t"] = p.elapsed

    t0 = time.perf_counter()
    try:
        r = engine.stylize(content, [(style, 1.0)], params, progress=progress, should_stop=lambda: "t" in hit)
        wall = time.perf_counter() - t0
        final, iters = saved_loss(engine, r.image, content, style, params), r.iterations
    except Interrupted:
        wall, final, iters = time.perf_counter() - t0, target, None
    return {"wall": wall, "final": final, "reached": hit.get("t"), "iterations": iters}


def saved_loss(engine: Engine, image: np.ndarray, content, style, params) -> float:
    """The objective's loss of the image as saved (8-bit PNG): what a user gets. An unclipped
    solver's last iterate (the origin's Adam) scores lower than its saved picture."""
    return engine.evaluate(np.round(np.clip(image, 0, 255)), content, [(style, 1.0)], params)["loss"]


def recipes(weights: VGGWeights, content, style, sizes: list[int], references: tuple[str, ...],
            objective: str = "origin", **engine_options) -> None:
    """Time to each reference recipe's final loss on one objective (``preset`` origin or default):
    the reference solvers (the origin's Adam from noise, the TF tutorial's Adam) against ``fast``.
    ``engine_options`` (compute, compiler) apply to every run alike."""
    print(f"time to reach each reference recipe's final loss ({objective} objective, seed 1, same size, "
          f"{engine_options.get('compute', 'fp32')}/{engine_options.get('compiler', 'xla')}):")
    print(f"{'size':>6} {'recipe':<44} {'seconds':>8} {'loss':>11} {'vs reference':>13}")
    for size in sizes:
        base = {"preset": objective, "size": size, "seed": 1,
                **({"solver": "origin"} if objective != "origin" else {})}
        fast = {**base, "solver": "fast", "iterations": 100000}
        refs = {"origin": ("origin recipe (Adam lr 2, noise, 200 it)", base),
                "tutorial": ("TF tutorial (Adam lr .02 b1 .99 eps .1, 1000 it)", {**base, "solver": "tutorial"})}
        for ref_name, ref_raw in (refs[r] for r in references):
            ref = run_recipe(weights, content, style, ref_raw, None, None, **engine_options)
            target, t_ref = ref["final"], ref["wall"]
            print(f"{size:>6} {ref_name:<44} {t_ref:>8.1f} {target:>11.5g} {'1.0x':>13}", flush=True)
            r = run_recipe(weights, content, style, fast, target, t_ref, **engine_options)
            if r["reached"] is not None:
                print(f"{size:>6} {'  fast solver, to that loss':<44} {r['reached']:>8.1f} {'<= ref':>11} "
                      f"{t_ref / r['reached']:>12.1f}x", flush=True)
            else:
                print(f"{size:>6} {'  fast solver, to that loss':<44} {'never':>8} {r['final']:>11.5g} "
                      f"{'-':>13}", flush=True)
            if "tutorial" not in ref_name:
                capped = run_recipe(weights, content, style, {**fast, "time_limit": t_ref / 5}, None, None,
                                    **engine_options)
                ok = "PASS" if capped["final"] <= target else "FAIL"
                print(f"{size:>6} {'  fast solver, time_limit=T/5':<44} {capped['wall']:>8.1f} "
                      f"{capped['final']:>11.5g} {ok:>13}", flush=True)


def choices(weights: VGGWeights, content, style, size: int = 256, objective: str = "origin",
            **engine_options) -> None:
    """Each solver choice changed alone: time to the origin's solver's final loss on one
    objective, capped at its time. ``engine_options`` (compute, compiler) apply to every run
    but the one that changes the compiler."""
    from nstd.engine.solvers import make_solver

    def normalised(x0, fg, params):  # the gradient divided by its mean magnitude before the solver sees it
        def fg_n(x):
            f, g, parts = fg(x)
            return f, g / max(float(np.abs(g).mean()), 1e-30), parts
        return make_solver(x0, fg_n, params)

    base = {"preset": objective, "size": size, "seed": 1, **({"solver": "origin"} if objective != "origin" else {})}
    ref = run_recipe(weights, content, style, base, None, None, **engine_options)
    target, cap = ref["final"], ref["wall"]
    print(f"solver choices at {size} px, {objective} objective: time to the origin's solver's saved loss "
          f"{target:.5g} (it took {cap:.1f}s; each run capped there)")
    fast = {**base, "solver": "fast", "iterations": 100000}
    adam = {**fast, "optimizer": "adam", "learning_rate": 2.0}
    variants = [("fast recipe: L-BFGS, content init, scales .5+1, 20 coarse its", fast, {}, None),
                ("  one scale only", {**fast, "scales": [1.0]}, {}, None),
                ("  100 coarse iterations", {**fast, "coarse_iterations": 100}, {}, None),
                ("  noise init (the origin's)", {**fast, "init": "noise"}, {}, None),
                ("  L-BFGS memory 20", {**fast, "lbfgs_memory": 20}, {}, None),
                ("  Adam lr 2 instead of L-BFGS", adam, {}, None),
                ("  Adam lr 2, normalised gradient", adam, {}, normalised),
                ("  without XLA", fast, {**engine_options, "compiler": "graph"}, None)]
    print(f"{'variant':<62} {'seconds':>8} {'loss':>11}")
    for name, raw, options, solver_factory in variants:
        r = run_recipe(weights, content, style, raw, target, cap, **(options or engine_options),
                       solvers=solver_factory or make_solver)
        seconds = f"{r['reached']:.1f}" if r["reached"] is not None else "never"
        print(f"{name:<62} {seconds:>8} {r['final']:>11.5g}", flush=True)


def latency(weights: VGGWeights, size: int = 512) -> None:
    """Second job of a shape: time from stylize() to its first iteration (no recompiling)."""
    from tests.conftest import make_image  # smooth synthetic pictures of a fixed shape
    import tempfile

    engine = Engine(weights)
    tmp = Path(tempfile.mkdtemp())
    shape = (size, size * 3 // 4)
    for job in (1, 2):
        c = load_image(make_image(tmp / f"c{job}.png", shape, seed=job))
        s = load_image(make_image(tmp / f"s{job}.png", (300, 300), seed=10 + job))
        first: dict[str, float] = {}
        t0 = time.perf_counter()
        r = engine.stylize(c, [(s, 1.0)], resolve({"size": size, "iterations": 2, "coarse_iterations": 1,
                                                   "seed": 1}),
                           progress=lambda p: first.setdefault("t", time.perf_counter() - t0))
        print(f"job {job} at {size} px ({shape[0]}x{shape[1]}, new style image): first iteration started "
              f"{r.timings['first_iteration_start']:.2f}s, done {first['t']:.2f}s after stylize() was called",
              flush=True)


def peak_rss(proc) -> int:
    """The child's own peak RSS (VmHWM), polled until it exits.

    Not wait4's ru_maxrss: Linux carries the parent's high-water mark into a child across
    fork/vfork + exec, so a child of a big bench process would report the bench's size.
    """
    peak = 0
    while proc.poll() is None:
        try:
            for line in open(f"/proc/{proc.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.1)
    return peak


def memory_use(sizes: list[int], iterations: int = 2) -> None:
    """Peak RSS and wall time of a whole ``nstd stylize`` process per size (tiles where needed)."""
    import subprocess
    import tempfile

    import yaml

    from nstd.engine.weights import save_npz

    tmp = Path(tempfile.mkdtemp())
    weights = save_npz(random_weights(), tmp / "vgg19-random.npz")
    images = REPO.parent / "shared" / "data" / "images"
    print(f"{'size':>6} {'peak RSS GiB':>13} {'seconds':>8}  notes")
    for size in sizes:
        out = tmp / f"out{size}.png"
        cmd = [sys.executable, "-m", "nstd", "stylize", str(images / "tubingen.jpg"), str(images / "starry_night.jpg"),
               "-o", str(out), "--weights", str(weights), "--size", str(size), "--iterations", str(iterations),
               "--set", "coarse_iterations=1", "--seed", "1"]
        t0 = time.perf_counter()
        with open(tmp / f"stderr{size}.txt", "w+") as log:  # a file: a full pipe would stall the child
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
            peak = peak_rss(proc)
            wall = time.perf_counter() - t0
            log.seek(0)
            err = log.read()
        report = tmp / f"out{size}.report.yaml"
        notes = yaml.safe_load(report.read_text()).get("notes", []) if report.exists() else [err.strip()[-200:]]
        print(f"{size:>6} {peak / 2**30:>13.2f} {wall:>8.1f}  {'; '.join(notes) or 'whole image'}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(REAL_WEIGHTS) if REAL_WEIGHTS.is_file() else None,
                    help="weights file (default: the real VGG-19 in ../shared/weights when present, else random "
                         "full-width weights; 'random' forces those)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512],
                    help="sizes for the recipe comparison (the first also for choices)")
    ap.add_argument("--step-sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per size (best and median shown)")
    ap.add_argument("--references", default="origin,tutorial", help="recipes to compare against")
    ap.add_argument("--objectives", default="origin,default", help="presets whose objective the recipes solve")
    ap.add_argument("--compute", default="fp32", help="the recipes' number format (auto: as the product runs)")
    ap.add_argument("--compiler", default="xla", help="the recipes' compiler (auto: as the product runs)")
    ap.add_argument("--memory-sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    ap.add_argument("--sections", default="steps,latency,recipes,memory",
                    help="comma list: steps, latency, recipes, memory, choices (each solver choice alone)")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    if not (SEED / "japanese_garden.jpg").is_file():
        print(f"bench: the origin's images are not at {SEED}", file=sys.stderr)
        return 1
    weights = load_weights(args.weights) if args.weights and args.weights != "random" else random_weights()
    content = load_image(SEED / "japanese_garden.jpg")
    style = load_image(SEED / "picasso_selfportrait.jpg")
    gpus = tf.config.list_logical_devices("GPU")
    print(f"device: {'GPU ' + gpus[0].name if gpus else 'CPU'} ({os.cpu_count()} cores), TF {tf.__version__}")
    print(f"weights: {weights.source} ({weights.format}, sha256 {(weights.sha256 or '-')[:16]})")
    if "steps" in sections:
        peak = peak_conv_gflops()
        print(f"peak 3x3 conv (256x256x256->256, XLA, best of 5): {peak:.1f} GFLOP/s")
        print("step = convolutions to the deepest layer, forward and back to the image, + Gram products\n")
        print(f"{'size':>6} {'GFLOP':>7} {'s/iter':>8} {'GFLOP/s':>8} {'% peak':>7}   {'median s':>8} {'% peak':>7}")
        for size in args.step_sizes:
            best, median, flops = step_speed(weights, content, style, size, args.repeats)
            print(f"{size:>6} {flops / 1e9:>7.1f} {best:>8.3f} {flops / best / 1e9:>8.1f} "
                  f"{100 * flops / best / 1e9 / peak:>6.0f}%   {median:>8.3f} {100 * flops / median / 1e9 / peak:>6.0f}%",
                  flush=True)
        print()
    if "latency" in sections:
        latency(weights)
        print()
    if "recipes" in sections:
        for objective in args.objectives.split(","):
            recipes(weights, content, style, args.sizes, tuple(args.references.split(",")), objective,
                    compute=args.compute, compiler=args.compiler)
            print()
    if "memory" in sections:
        memory_use(args.memory_sizes)
    if "choices" in sections:
        for objective in args.objectives.split(","):
            choices(weights, content, style, args.sizes[0], objective, compute=args.compute, compiler=args.compiler)
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

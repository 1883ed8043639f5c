"""Print sizes on real VGG-19 weights: does a big picture look like the 512 px one, painted?

    python bench/prints.py                                   # 512, 1024, 2048, 4096 px (about 1.5 h on 2 cores)
    python bench/prints.py --sizes 512,1024 --pair brad_pitt:the_scream
    python bench/prints.py --first-iteration                 # a fresh cache, two photos of different shapes
    python bench/prints.py --kill 4096                       # kill -9 in the last pass's tiles, resume, compare
    python bench/prints.py --sizes 4096 --set detail_iterations=2 && \
        python bench/prints.py --kill 4096 --set detail_iterations=2 --checkpoint-every 1   # the same, quicker

Each size runs as its own process with the default plan, so its wall time and peak RSS are
its own. Every result is then judged at 512 px (``nstd.metrics``: content and style of the
result downsampled, against the 512 px result's), and its finest octave's energy over the
content's at the same size (``metrics.fine_ratio``: a big result noisier than the 512 px one
reads higher), and the same at the photo's own size where the result is larger. It writes
``prints.json`` and a sheet: the results downsampled side by side, then 256 px crops at 100%
around the same point of the picture.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from quality import IMAGES, REAL_WEIGHTS  # noqa: E402
from sheet import sheet, tile  # noqa: E402

from nstd.images import load_image, resize, save_image  # noqa: E402

CROP = 256  # px of each 100% crop
CENTRE = (0.62, 0.22)  # where the crops are centred, as fractions of width and height (sky and roofs)


def crop_corner(width: int, height: int) -> tuple[int, int]:
    """(x0, y0) of the CROP-sided 100% crop around CENTRE: the same region at every size."""
    return max(0, round(CENTRE[0] * width) - CROP // 2), max(0, round(CENTRE[1] * height) - CROP // 2)


def one(size: int, pair: str, weights: str, out: Path, extra: dict, checkpoints: Path | None = None,
        checkpoint_every: int = 10) -> dict:
    """Run one size in this process (the child's side); returns its row without judging.
    ``checkpoints``: keep a checkpoint there every ``checkpoint_every`` iterations, print
    progress, and resume from it if it exists (the picture is then ``print-SIZE-resumed.png``)."""
    from nstd.atomic import write_bytes_atomic
    from nstd.engine import Engine, Hooks, load_checkpoint, load_weights, plan, save_checkpoint
    from nstd.params import resolve

    engine = Engine(load_weights(weights))
    c_name, s_name = pair.split(":")
    content, style = load_image(IMAGES[c_name]), load_image(IMAGES[s_name])
    params = resolve({**extra, "size": size, "seed": 1})
    scales = plan.scales(*plan.check_size(*content.size, params.size), params)
    tiles: dict[int, int] = {}  # scale number -> tiles it ran in (0: whole)

    def progress(p) -> None:
        tiles[p.scale] = p.tiles
        if checkpoints is not None:
            print(f"PROGRESS {p.scale} {p.scales} {p.tile} {p.tiles} {p.iteration}", flush=True)

    hooks = Hooks(plan=lambda p: print(f"plan: {p.describe()}", flush=True), progress=progress)
    resume, name = None, f"print-{size}"
    if checkpoints is not None:
        resume = load_checkpoint(checkpoints.read_bytes()) if checkpoints.is_file() else None
        hooks.checkpoint = lambda state: write_bytes_atomic(checkpoints, save_checkpoint(state))
        hooks.checkpoint_every = checkpoint_every
        name += "-resumed" if resume is not None else "-killed"
    t0 = time.monotonic()
    r = engine.stylize(content, [(style, 1.0)], params, hooks=hooks, resume=resume)
    wall = time.monotonic() - t0
    save_image(out / f"{name}.png", r.image)
    flops = 0.0
    for s in scales:
        p = plan.detail_params(params) if s.detail else params
        layers = tuple(n for n, _ in p.content_layers + p.style_layers)
        flops += s.iterations * engine.vgg.step_flops(s.height, s.width, layers, tuple(n for n, _ in p.style_layers))
    w, h = r.image.shape[1], r.image.shape[0]
    return {"size": size, "pixels": [w, h], "wall_s": round(wall, 1), "timings": r.timings,
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "scales": [[s.width, s.height, s.iterations, "detail" if s.detail else "full", tiles.get(i + 1, 0)]
                       for i, s in enumerate(scales)],
            "notes": r.notes, "precision": r.precision, "evaluations": r.evaluations,
            "us_per_pixel": round(wall / (w * h) * 1e6, 2),
            "gflop": round(flops / 1e9, 1), "gflops_per_s": round(flops / 1e9 / max(r.timings["optimize"], 1e-9), 1)}


def judge(rows: list[dict], pair: str, weights: str, out: Path) -> None:
    """Scores at 512 px and fine-octave ratios, added to ``rows``."""
    from nstd.engine import Engine, load_weights, plan
    from nstd.metrics import Judge, fine_ratio

    engine = Engine(load_weights(weights))
    c_name, s_name = pair.split(":")
    content, style = load_image(IMAGES[c_name]), load_image(IMAGES[s_name])
    w, h = plan.check_size(*content.size, 512)
    j = Judge(engine, resize(content.rgb, w, h), resize(style.rgb, *plan.check_size(*style.size, 512)))
    for row in rows:
        image = load_image(out / f"print-{row['size']}.png").rgb
        scores = j(resize(image, w, h))
        # an enlarged photo has an empty finest octave, so above the photo's size the ratio
        # reads high for any texture at all: also measure both at the photo's own size
        native = min(1.0, content.size[0] / image.shape[1])
        nw, nh = round(image.shape[1] * native), round(image.shape[0] * native)
        at_photo = fine_ratio(resize(image, nw, nh), resize(content.rgb, nw, nh))
        row.update({"content_at_512": round(scores.content, 4), "style_at_512": round(scores.style, 4),
                    "fine_ratio": round(fine_ratio(image, resize(content.rgb, image.shape[1], image.shape[0])), 3),
                    "fine_ratio_at_photo_size": round(at_photo, 3)})


def contact_sheet(rows: list[dict], out: Path) -> Path:
    tops, crops = [], []
    for row in rows:
        image = Image.open(out / f"print-{row['size']}.png").convert("RGB")
        x0, y0 = crop_corner(image.width, image.height)
        label = (f"{row['size']} px: {row['wall_s']:.0f} s, {row['peak_rss_gib']} GiB\n"
                 f"content {row['content_at_512']:.3f} style {row['style_at_512']:.3f} fine {row['fine_ratio']:.2f}")
        tops.append(tile(image.resize((512, round(512 * image.height / image.width)), Image.LANCZOS), 384, label))
        crops.append(tile(image.crop((x0, y0, x0 + CROP, y0 + CROP)), CROP, f"{row['size']} px, 100% crop"))
    return sheet([tops, crops], out / "prints.png")


def first_iteration(weights: str) -> None:
    """On a fresh cache: two photos of different aspect ratios at 512 px, one process."""
    from nstd.engine import Engine, load_weights
    from nstd.params import resolve

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="nstd-bench-cache-")
    engine = Engine(load_weights(weights))
    style = load_image(IMAGES["starry_night"])
    for name in ("tubingen", "brad_pitt"):
        content = load_image(IMAGES[name])
        r = engine.stylize(content, [(style, 1.0)], resolve({"seed": 1, "iterations": 3, "coarse_iterations": 2}))
        print(json.dumps({"photo": name, "shape": r.shapes[-1], "first_iteration_s": r.timings["first_iteration_start"],
                          "measured": len(engine.chooser.measured), "precision": r.precision}), flush=True)


def kill_and_resume(size: int, args: argparse.Namespace, out: Path) -> int:
    """kill -9 the job halfway through its last pass's tiles, resume it from its checkpoint,
    and compare with the uninterrupted picture (``print-SIZE.png``, from an earlier run)."""
    import signal

    ckpt = out / f"print-{size}.checkpoint"
    ckpt.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--one", str(size), "--pair", args.pair, "--weights", args.weights,
           "--out", str(out), "--checkpoints", str(ckpt), "--checkpoint-every", str(args.checkpoint_every),
           *(a for s in args.set for a in ("--set", s))]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    killed_at = None
    for line in child.stdout:
        f = line.split()
        if f[:1] == ["PROGRESS"] and f[1] == f[2] and int(f[4]) > 0 and int(f[3]) > int(f[4]) // 2 and ckpt.is_file():
            killed_at = f"scale {f[1]}/{f[2]}, tile {f[3]}/{f[4]}, iteration {f[5]}"
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    if killed_at is None:
        print("the job ended before its last pass was tiled: nothing to kill", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
        return 1
    whole = load_image(out / f"print-{size}.png").rgb
    resumed = load_image(out / f"print-{size}-resumed.png").rgb
    diff = np.abs(whole.astype(np.float64) - resumed)
    row = {"size": size, "killed_at": killed_at, "resume_wall_s": round(time.monotonic() - t0, 1),
           "identical": bool(np.array_equal(whole, resumed)), "max_abs_diff": float(diff.max()),
           "mean_abs_diff": round(float(diff.mean()), 4)}
    print(json.dumps(row), flush=True)
    (out / f"kill-{size}.json").write_text(json.dumps(row, indent=1))
    kill_sheet(whole, resumed, diff, row, out)
    return 0


def kill_sheet(whole: np.ndarray, resumed: np.ndarray, diff: np.ndarray, row: dict, out: Path) -> Path:
    """Uninterrupted, resumed and their difference (×10) at 512 px, then 100% crops of both."""
    h, w = whole.shape[:2]
    small = (512, round(512 * h / w))
    x0, y0 = crop_corner(w, h)
    mean = f"mean difference {row['mean_abs_diff']} of 255, at most {row['max_abs_diff']:.0f}"
    tops = [tile(resize(whole, *small), 384, f"{row['size']} px, uninterrupted"),
            tile(resize(resumed, *small), 384, f"killed at {row['killed_at']}\nthen resumed"),
            tile(np.minimum(resize(diff, *small).mean(axis=2, keepdims=True).repeat(3, 2) * 10, 255), 384,
                 f"difference x10\n{mean}")]
    crops = [tile(a[y0:y0 + CROP, x0:x0 + CROP], CROP, f"{name}, 100% crop")
             for a, name in ((whole, "uninterrupted"), (resumed, "resumed"))]
    return sheet([tops, crops], out / f"kill-{row['size']}.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    ap.add_argument("--pair", default="tubingen:starry_night")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more parameters (YAML values)")
    ap.add_argument("--weights", default=str(REAL_WEIGHTS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "prints"))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: run this size, print its row
    ap.add_argument("--reuse", action="store_true", help="keep the rows of sizes already in --out/prints.json")
    ap.add_argument("--first-iteration", action="store_true", help="time the first iteration on a fresh cache")
    ap.add_argument("--kill", type=int, metavar="SIZE", help="kill -9 a job of SIZE in its last pass, resume, compare")
    ap.add_argument("--checkpoints", type=Path, help=argparse.SUPPRESS)  # the child's checkpoint file
    ap.add_argument("--checkpoint-every", type=int, default=10, metavar="N",
                    help="--kill: iterations between checkpoints (a tile gets half its pass's iterations)")
    args = ap.parse_args()
    import yaml

    if args.first_iteration:
        first_iteration(args.weights)
        return 0
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        row = one(args.one, args.pair, args.weights, out, extra, args.checkpoints, args.checkpoint_every)
        print("ROW " + json.dumps(row), flush=True)
        return 0
    if args.kill:
        return kill_and_resume(args.kill, args, out)
    done = {r["size"]: r for r in json.loads((out / "prints.json").read_text())} \
        if args.reuse and (out / "prints.json").is_file() else {}
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        if size in done:
            rows.append(done[size])
            continue
        cmd = [sys.executable, __file__, "--one", str(size), "--pair", args.pair, "--weights", args.weights,
               "--out", str(out), *(a for s in args.set for a in ("--set", s))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        rows.append(json.loads(line[4:]))
        print(json.dumps(rows[-1]), flush=True)
    judge(rows, args.pair, args.weights, out)
    base = next((r for r in rows if r["size"] == 512), None)
    for row in rows:
        if base is not None:
            row["wall_vs_512"] = round(row["wall_s"] / base["wall_s"], 2)
        print(json.dumps({k: row[k] for k in ("size", "content_at_512", "style_at_512", "fine_ratio", "wall_s",
                                              "peak_rss_gib", "us_per_pixel", "gflops_per_s") + (
                                                  ("wall_vs_512",) if base else ())}), flush=True)
    (out / "prints.json").write_text(json.dumps(rows, indent=1))
    print(f"sheet: {contact_sheet(rows, out)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

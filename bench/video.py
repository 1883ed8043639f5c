"""Video on real VGG-19 weights: speed per frame and flicker, against frames stylized alone.

    python bench/video.py                                  # 256 px, the first 12 frames
    python bench/video.py --size 512 --frames 12 --configs warm30,temporal30@10

The clip is the shared ``../shared/data/video/bigbuckbunny.mp4`` (Big Buck Bunny,
© Blender Foundation, CC BY 3.0, https://peach.blender.org); it is read from there, never
copied into the repository. The style is *The Starry Night*.

For each configuration (``warmN``: later frames start from the previous stylized frame
warped by the flow, N iterations each, no temporal term; ``temporalN@W``: the same plus the
temporal loss at weight W, or ``--temporal-weight``), the frames are stylized by nstd's own frame loop
(:func:`nstd.video.clip_job.stylize_clip`); the baseline stylizes every frame alone as a
still (the flicker baseline). All share frame 0, which is the same still in every case.

Two of Ruder et al.'s further steps are measured here, outside the product, to see whether
they pay: ``longN@W`` holds each pixel to the nearest of frames t−1, t−2 and t−4 where the
flow from it is reliable (their long-term term, with exclusive masks, as one target), and
``twopassN@W`` runs the ``temporalN@W`` clip again backwards, each frame held to both
neighbours (the next frame of this pass, the previous of the first) and started from its
first-pass picture blended with them.

Measured, in one run:

* seconds per frame: the first (a still) and the mean of the later ones;
* the **temporal warp error**: mean |O_t − warp(O_{t−1})| over reliable pixels (0–255,
  per channel), the flow from the input frames; for each configuration, for the stills,
  and for the input clip itself (the floor the flow allows); and the same between frames
  4 apart (``warp_error_4``), where long-term terms should show;
* style match and content preservation per frame (``nstd.metrics``), as means.

It writes ``video-<size>.json`` (the numbers), ``video-strip-<size>.jpg`` (four
consecutive frames: input, stills, each configuration) and ``video-<size>.webp`` (the
best configuration, animated at the clip's frame rate) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sheet import sheet, tile  # noqa: E402

from nstd.engine import Engine, load_weights  # noqa: E402
from nstd.images import LoadedImage, fit_size, load_image, resize  # noqa: E402
from nstd.metrics import Judge  # noqa: E402
from nstd.params import parse_set, resolve  # noqa: E402
from nstd.video import flow  # noqa: E402
from nstd.video.clip import open_clip  # noqa: E402
from nstd.video.clip_job import stylize_clip, takes_temporal  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_WEIGHTS = SHARED / "weights" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
CLIP = SHARED / "data" / "video" / "bigbuckbunny.mp4"
STYLE = SHARED / "data" / "images" / "starry_night.jpg"
CREDIT = "Big Buck Bunny, (c) Blender Foundation, CC BY 3.0"


def cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} cores{', avx512_bf16' if 'avx512_bf16' in text else ''}"


LONG_TERM = (1, 2, 4)  # frames back a pixel may be held to (Ruder et al. use 1, 10, 20 on long clips)


def later_frame(engine, style, rgb: np.ndarray, start: np.ndarray, target: np.ndarray, mask: np.ndarray,
                params) -> np.ndarray:
    """One later frame: from ``start``, held to ``target`` where ``mask``, 8 bits as the loop stores it."""
    from nstd.video.clip_job import frame_params
    from nstd.video.temporal import Temporal

    r = engine.stylize(LoadedImage(rgb, None, "frame", ""), [(style, 1.0)], frame_params(params, True),
                       init_image=LoadedImage(start, None, "start", ""),
                       temporal=Temporal(target, mask, params.temporal_weight))
    return np.clip(np.rint(r.image), 0, 255).astype(np.float32)


def long_term(engine, style, inputs: list[np.ndarray], first: np.ndarray, params) -> list[np.ndarray]:
    """Forward, each pixel held to the nearest of t−1, t−2, t−4 whose flow to it is reliable."""
    out = [first]
    for t in range(1, len(inputs)):
        target, mask = np.zeros_like(inputs[t], np.float32), np.zeros(inputs[t].shape[:2], np.float32)
        start = None
        for j in (j for j in LONG_TERM if j <= t):
            m = flow.motion(inputs[t - j], inputs[t])
            warped, new = m.warp(out[t - j]), m.mask * (1 - mask)  # only pixels no nearer frame holds
            target += new[..., None] * warped
            mask += new
            start = warped if start is None else start
        out.append(later_frame(engine, style, inputs[t], start, target, mask, params))
    return out


def two_pass(engine, style, inputs: list[np.ndarray], first: np.ndarray, params) -> list[np.ndarray]:
    """The forward clip, then a backward pass held to both neighbours."""
    fwd = [first]
    for t in range(1, len(inputs)):
        m = flow.motion(inputs[t - 1], inputs[t])
        w = m.warp(fwd[-1])
        fwd.append(later_frame(engine, style, inputs[t], w, w, m.mask, params))
    out = list(fwd)
    for t in range(len(inputs) - 2, -1, -1):
        nxt = flow.motion(inputs[t + 1], inputs[t])  # from the next frame (this pass's) onto t
        parts = [(nxt.warp(out[t + 1]), nxt.mask)]
        if t > 0:
            prv = flow.motion(inputs[t - 1], inputs[t])
            parts.append((prv.warp(fwd[t - 1]), prv.mask))
        weight = sum(m for _, m in parts)
        target = sum(m[..., None] * w for w, m in parts) / np.maximum(weight, 1)[..., None]
        mask = np.minimum(weight, 1)
        start = mask[..., None] * (target + fwd[t]) / 2 + (1 - mask[..., None]) * fwd[t]
        out[t] = later_frame(engine, style, inputs[t], start, target, mask, params)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--configs", default="warm30,temporal30@1,temporal30@10,temporal10@10",
                    help="comma-separated warmN / temporalN[@WEIGHT] (N: iterations of each later frame)")
    ap.add_argument("--temporal-weight", type=float, default=1.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any parameter, for all runs")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--style", default=str(STYLE))
    ap.add_argument("--weights", default=str(REAL_WEIGHTS), help="(a small file here only tries the script)")
    args = ap.parse_args(argv)
    for need in (Path(args.weights), Path(args.clip), Path(args.style)):
        if not need.is_file():
            print(f"missing {need}", file=sys.stderr)
            return 2
    out = Path(args.out)
    base = resolve({"size": args.size, "seed": 1, **parse_set(args.set)})
    engine = Engine(load_weights(args.weights))
    style = load_image(Path(args.style))
    with open_clip(args.clip) as clip:
        fit = fit_size(clip.info.width, clip.info.height, args.size)
        fit = (fit[0] - fit[0] % 2, fit[1] - fit[1] % 2)
        inputs = []
        for f in clip.frames(size=fit_size(clip.info.width, clip.info.height, args.size)):
            inputs.append(np.rint(np.clip(f.rgb[: fit[1], : fit[0]], 0, 255)))  # 8 bits, as the loop reads them
            if len(inputs) == args.frames:
                break
        fps = clip.info.fps
    results: dict[str, dict] = {}
    style_rgb = resize(style.rgb, *fit_size(style.size[0], style.size[1], max(fit)))

    def scores(frames: list[np.ndarray]) -> dict[str, float]:
        s = [Judge(engine, inp, style_rgb)(img) for inp, img in zip(inputs, frames)]
        return {"style_match": round(float(np.mean([x.style for x in s])), 4),
                "content_preservation": round(float(np.mean([x.content for x in s])), 4)}

    # the stills: each frame alone (frame 0 is every configuration's first frame too)
    stills, still_s = [], []
    for i, rgb in enumerate(inputs):
        t0 = time.monotonic()
        r = engine.stylize(LoadedImage(rgb, None, f"frame{i}", f"frame{i}"), [(style, 1.0)],
                           dataclasses.replace(base, size=None))
        still_s.append(time.monotonic() - t0)
        stills.append(np.clip(np.rint(r.image), 0, 255).astype(np.uint8).astype(np.float32))
        print(f"still {i + 1}/{len(inputs)}: {still_s[-1]:.1f}s", file=sys.stderr)
    floor = flow.warp_error(inputs, inputs)
    results["input"] = {"warp_error": round(floor, 3), "warp_error_4": round(flow.warp_error(inputs[::4], inputs[::4]), 3)}
    results["stills"] = {"warp_error": round(flow.warp_error(stills, inputs), 3),
                         "warp_error_4": round(flow.warp_error(stills[::4], inputs[::4]), 3),
                         "seconds_first": round(still_s[0], 2),
                         "seconds_per_frame": round(float(np.mean(still_s[1:])), 2), **scores(stills)}
    print(json.dumps(results), file=sys.stderr)

    # each configuration through nstd's frame loop, from the same frame 0
    tmp = Path(tempfile.mkdtemp(prefix="nstd-bench-video-"))
    src = tmp / "input"  # a folder of numbered frames (25 fps): exactly the stills' inputs
    src.mkdir()
    for i, rgb in enumerate(inputs):
        Image.fromarray(rgb.astype(np.uint8)).save(src / f"{i + 1:04d}.png")
    seeded = None
    runs: dict[str, list[np.ndarray]] = {}
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name.startswith(("long", "twopass")):
            spec, _, weight = name.removeprefix("long").removeprefix("twopass").partition("@")
            params = dataclasses.replace(base, frame_iterations=int(spec), temporal_weight=float(weight or 1))
            t0 = time.monotonic()
            frames = (long_term if name.startswith("long") else two_pass)(engine, style, inputs, stills[0], params)
            runs[name] = frames
            results[name] = {"warp_error": round(flow.warp_error(frames, inputs), 3),
                             "warp_error_4": round(flow.warp_error(frames[::4], inputs[::4]), 3),
                             "seconds_per_later_frame": round((time.monotonic() - t0) / (len(inputs) - 1), 2),
                             "iterations_per_later_frame": int(spec) * (2 if name.startswith("two") else 1),
                             "temporal_weight": params.temporal_weight, **scores(frames)}
            print(json.dumps({name: results[name]}), file=sys.stderr)
            continue
        temporal = name.startswith("temporal")
        spec, _, weight = name.removeprefix("temporal").removeprefix("warm").partition("@")
        n = int(spec)
        if temporal and not takes_temporal(engine):
            print(f"{name}: this engine takes no temporal target; skipped", file=sys.stderr)
            continue
        params = dataclasses.replace(base, frame_iterations=n,
                                     temporal_weight=(float(weight) if weight else args.temporal_weight)
                                     if temporal else 0.0)
        work = tmp / name
        if seeded is not None:  # frame 0 as the first run made it: the same still in every run
            (work / "frames").mkdir(parents=True)
            for f in seeded.iterdir():
                if f.name.startswith("000000.") or f.name == "clip.yaml":
                    shutil.copy(f, work / "frames" / f.name)
        with open_clip(src) as clip:
            r = stylize_clip(engine, clip, [(style, 1.0)], params, tmp / f"{name}-out.png", work, key="bench")
        seeded = seeded or work / "frames"
        frames = [np.asarray(Image.open(work / "frames" / f"{i:06d}.png"), np.float32) for i in range(len(inputs))]
        runs[name] = frames
        later = [x["seconds"] for x in r.frames[1:]]
        results[name] = {"warp_error": round(flow.warp_error(frames, inputs), 3),
                         "warp_error_4": round(flow.warp_error(frames[::4], inputs[::4]), 3),
                         "seconds_per_later_frame": round(float(np.mean(later)), 2),
                         "iterations_per_later_frame": n, "temporal_weight": params.temporal_weight,
                         "mean_reliable": round(float(np.mean([x["reliable"] for x in r.frames[1:]])), 3),
                         **scores(frames)}
        print(json.dumps({name: results[name]}), file=sys.stderr)
    for name, r in results.items():
        if name != "input":
            r["warp_error_vs_input"] = round(r["warp_error"] / max(floor, 1e-9), 2)
            r["warp_error_vs_stills"] = round(r["warp_error"] / max(results["stills"]["warp_error"], 1e-9), 3)
    meta = {"clip": CREDIT, "frames": len(inputs), "size": list(fit), "fps": fps, "cpu": cpu(),
            "device": engine.device, "parameters": {k: v for k, v in base.as_dict().items()
                                                     if k in ("size", "iterations", "coarse_iterations", "seed",
                                                              "strength", "scales")}}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"video-{args.size}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    # the strip: four consecutive frames from the middle; input, stills, each configuration
    shown = range(max(0, min(len(inputs) - 4, len(inputs) // 2 - 2)), min(len(inputs), max(4, len(inputs) // 2 + 2)))
    rows = [[tile(inputs[t], 110, f"input t={t}") for t in shown],
            [tile(stills[t], 110, f"each frame a still, t={t}") for t in shown]]
    for name, frames in runs.items():
        rows.append([tile(frames[t], 110, f"nstd {name}, t={t}") for t in shown])
    strip = sheet(rows, tmp / "strip.png")
    Image.open(strip).convert("RGB").save(out / f"video-strip-{args.size}.jpg", quality=90)
    best = min(runs, key=lambda k: results[k]["warp_error"]) if runs else None
    if best:
        pics = [Image.fromarray(np.clip(f, 0, 255).astype(np.uint8)) for f in runs[best]]
        pics[0].save(out / f"video-{args.size}.webp", save_all=True, append_images=pics[1:],
                     duration=round(1000 / fps), loop=0, quality=80)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

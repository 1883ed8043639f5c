"""Tiled against untiled on real VGG-19 weights: are the tile borders visible?

    python bench/seams.py                                  # 1024 px, 256 px tiles (about an hour on 2 cores)
    python bench/seams.py --size 384 --tile 128 --pair tubingen:starry_night

Runs one pair twice with the same seed and parameters, once whole and once with
``tile_size`` forced small, and reports the edge energy on the tile borders (the mean
|difference| between neighbouring pixels across each border line, ±2 px) for both images
on the same lines (the borders of both sweeps' layouts, together and each alone). The tiled
one should be within 10% of the untiled one. It saves both results, a side-by-side sheet
and 4× crops around a border crossing.
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

from PIL import Image  # noqa: E402
from quality import IMAGES, REAL_WEIGHTS  # noqa: E402
from sheet import sheet, tile  # noqa: E402

from nstd.engine import Engine, load_weights  # noqa: E402
from nstd.engine.tiling import borders, windows  # noqa: E402
from nstd.images import load_image, save_image  # noqa: E402
from nstd.metrics import line_energy  # noqa: E402
from nstd.params import resolve  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--pair", default="tubingen:starry_night")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more parameters (YAML values)")
    ap.add_argument("--weights", default=str(REAL_WEIGHTS))
    ap.add_argument("--reuse-untiled", action="store_true",
                    help="take the untiled image and its time from an earlier run in --out (same parameters)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "seams"))
    args = ap.parse_args()
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = load_weights(args.weights)
    print(f"weights: {weights.source} (sha256 {weights.sha256[:16]}…)", flush=True)
    engine = Engine(weights)
    c_name, s_name = args.pair.split(":")
    content, style = load_image(IMAGES[c_name]), load_image(IMAGES[s_name])
    base = {**extra, "size": args.size, "seed": 1}
    results = {}
    earlier = out / f"seams-{args.size}.json"
    if args.reuse_untiled and earlier.is_file() and (out / f"untiled-{args.size}.png").is_file():
        from types import SimpleNamespace

        seconds = json.loads(earlier.read_text())["seconds"]["untiled"]
        image = load_image(out / f"untiled-{args.size}.png").rgb
        results["untiled"] = (SimpleNamespace(image=image, notes=["reused"]), seconds)
    for label, raw in (("untiled", base), ("tiled", {**base, "tile_size": args.tile})):
        if label in results:
            continue
        t0 = time.monotonic()
        r = engine.stylize(content, [(style, 1.0)], resolve(raw))
        results[label] = (r, time.monotonic() - t0)
        save_image(out / f"{label}-{args.size}.png", r.image)
        print(f"{label}: {results[label][1]:.0f} s, {r.notes}", flush=True)
    h, w = results["untiled"][0].image.shape[:2]
    rows, cols = borders(w, h, args.tile)
    energy = {k: line_energy(r.image, rows, cols) for k, (r, _) in results.items()}
    by_sweep = {}  # each sweep's borders alone: the first sweep's are where the tiles' textures blend
    for sweep, shifted in (("first", False), ("second", True)):
        owned = [t.owned for t in windows(w, h, args.tile, shifted)]
        lines = sorted({o.y0 for o in owned if o.y0}), sorted({o.x0 for o in owned if o.x0})
        by_sweep[sweep] = {k: round(line_energy(r.image, *lines), 2) for k, (r, _) in results.items()}
    p = resolve(base)
    loss = {k: engine.evaluate(r.image, content, [(style, 1.0)], p)["loss"] for k, (r, _) in results.items()}
    row = {"pair": args.pair, "size": [w, h], "tile": args.tile, "rows": rows, "columns": cols,
           "border_energy": energy, "ratio": round(energy["tiled"] / energy["untiled"], 3), "by_sweep": by_sweep,
           "loss": loss, "loss_ratio": round(loss["tiled"] / loss["untiled"], 3),
           "seconds": {k: round(s, 1) for k, (_, s) in results.items()}, "params": extra}
    print(json.dumps(row), flush=True)
    (out / f"seams-{args.size}.json").write_text(json.dumps(row, indent=1))
    y, x = (rows[0] if rows else h // 2), (cols[0] if cols else w // 2)  # a border crossing, 4× enlarged
    box = (max(0, x - 48), max(0, y - 48), min(w, x + 48), min(h, y + 48))
    crops = [Image.fromarray(r.image.clip(0, 255).astype("uint8")).crop(box).resize((384, 384), Image.NEAREST)
             for r, _ in results.values()]
    height = 360
    sheet([[tile(r.image, height, f"{k} {s:.0f}s  border energy {energy[k]:.2f}") for k, (r, s) in results.items()],
           [tile(c, 384, f"{k}: 4x crop at the border crossing ({x}, {y})") for k, c in zip(results, crops)]],
          out / f"seams-{args.size}.png")
    print(f"sheet: {out}/seams-{args.size}.png", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 4's check through the real CLI: origin recipe vs fast solver with a fifth of its time.

    python bench/cli_check.py [--size 256]

Writes a random-weights MatConvNet .mat, runs
  nstd stylize japanese_garden.jpg picasso_selfportrait.jpg -o origin.png --preset origin --size S --seed 1
(T seconds), then the same with -o fast.png --set solver=fast --set time_limit=T/5, and
compares both images' loss on the origin's objective with the independent numpy
reference in tests/reference.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from tests.reference import load_rgb, origin_loss  # noqa: E402
from tests.weightfiles import random_network, write_mat  # noqa: E402

SEED = REPO.parent / "shared" / "data" / "seed"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    net = random_network(1)
    weights = write_mat(tmp / "W.mat", net)
    base = [sys.executable, "-m", "nstd", "stylize", str(SEED / "japanese_garden.jpg"),
            str(SEED / "picasso_selfportrait.jpg"), "--weights", str(weights), "--size", str(args.size), "--seed", "1"]
    t0 = time.perf_counter()
    subprocess.run(base + ["-o", str(tmp / "origin.png"), "--preset", "origin"], check=True, capture_output=True)
    t = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(base + ["-o", str(tmp / "fast.png"), "--preset", "origin", "--set", "solver=fast",
                           "--set", f"time_limit={t / 5:.1f}"], check=True, capture_output=True)
    t_fast = time.perf_counter() - t0
    size = Image.open(tmp / "origin.png").size
    content = load_rgb(SEED / "japanese_garden.jpg", size)
    style = load_rgb(SEED / "picasso_selfportrait.jpg", size)
    l_origin = origin_loss(net, load_rgb(tmp / "origin.png"), content, style)
    l_fast = origin_loss(net, load_rgb(tmp / "fast.png"), content, style)
    print(f"size {args.size} ({size[0]}x{size[1]}): --preset origin took T = {t:.1f}s, loss {l_origin:.6g}")
    print(f"  --set solver=fast --set time_limit={t / 5:.1f} (T/5) took {t_fast:.1f}s wall, loss {l_fast:.6g}")
    print(f"  fast/origin loss ratio {l_fast / l_origin:.3f}: {'PASS' if l_fast <= l_origin else 'FAIL'}")
    return 0 if l_fast <= l_origin else 1


if __name__ == "__main__":
    raise SystemExit(main())

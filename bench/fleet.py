"""Time for N small jobs on 1, 2 and 3 workers sharing one Redis queue (real processes).

    python bench/fleet.py [--jobs 30] [--workers 1,2,3] [--size 64] [--iterations 20]

Starts redis-server on a free loopback port, then for each worker count a fresh share
(inbox, outbox, state) and that many ``nstd run`` processes from one config; drops the
jobs at once and times from the drop to the last report. Start-up (TensorFlow import,
weights) is outside the timing: every worker has logged "ready" before the drop.
Weights: a small random network made here (the step's cost, not the picture, matters).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_image  # noqa: E402
from tests.daemon_harness import Daemon, free_port, outputs, wait_until, write_config  # noqa: E402
from tests.weightfiles import random_network, write_mat  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nstd-fleet-"))
    weights = write_mat(tmp / "net.mat", random_network(seed=7, width_scale=0.5))
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
                              "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    rows = []
    try:
        time.sleep(0.5)
        for n in map(int, args.workers.split(",")):
            root = tmp / f"share-{n}"
            cfg = write_config(root, weights, queue={"backend": "redis", "url": f"redis://127.0.0.1:{port}/0",
                                                     "prefix": f"bench{n}"},
                               defaults={"size": args.size, "iterations": args.iterations, "coarse_iterations": 5,
                                         "seed": 1}, limits={"size": 1024},
                               service={"lease_timeout": 30, "heartbeat_seconds": 1})
            daemons = [Daemon(cfg) for _ in range(n)]
            try:
                for d in daemons:
                    d.wait_log("ready:", 120)
                staging = root / "staging"
                for i in range(args.jobs):
                    make_image(staging / f"j{i:02d}.style.png", (48, 48), seed=100 + i)
                    make_image(staging / f"j{i:02d}.content.png", (args.size, args.size * 3 // 4), seed=i)
                t0 = time.monotonic()
                for f in sorted(staging.iterdir()):
                    f.rename(root / "inbox" / f.name)
                wait_until(lambda: len(outputs(root, "*.report.yaml")) >= args.jobs, 3600, "every report")
                seconds = time.monotonic() - t0
                per = {d.log_path.name: d.log.count(" done: ") for d in daemons}
            finally:
                for d in daemons:
                    d.stop()
            row = {"workers": n, "jobs": args.jobs, "seconds": round(seconds, 1),
                   "jobs_per_minute": round(60 * args.jobs / seconds, 1), "per_worker": per}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0]["seconds"]
    for r in rows:
        print(f"| {r['workers']} | {r['seconds']:.0f} s | {r['jobs_per_minute']:.1f} | {base / r['seconds']:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does serving the page slow the optimiser? Step time with and without a polling browser.

    python bench/web_cost.py [--size 256] [--iterations 30] [--rounds 2]

One process, as in the daemon: the engine (real VGG-19 weights where ../shared has them)
and the web server on its own threads. Rounds alternate quiet and served runs of the same
job; in served runs a client thread fetches the page's state, /metrics, the script and a
result image every 0.5 s (four times as often as the page itself polls). The step time is
the median over steady iterations (the first of each run, which compiles, is left out).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality import IMAGES, REAL_WEIGHTS  # noqa: E402

from nstd import config as config_mod  # noqa: E402
from nstd.engine import Engine, load_weights  # noqa: E402
from nstd.images import load_image, save_image  # noqa: E402
from nstd.params import resolve  # noqa: E402
from nstd.web.metrics import Metrics  # noqa: E402
from nstd.daemon.status import StatusBoard  # noqa: E402
from nstd.web.server import WebServer  # noqa: E402


def steady_steps(engine: Engine, content, style, size: int, iterations: int) -> list[float]:
    r = engine.stylize(content, [(style, 1.0)], resolve({"size": size, "iterations": iterations, "scales": [1.0],
                                                          "seed": 1, "optimizer": "adam", "solver": "origin"}))
    times = [h["elapsed"] for h in r.history]
    return [b - a for a, b in zip(times[1:], times[2:])]


def poll(base: str, stop: threading.Event, counter: list[int]) -> None:
    while not stop.is_set():
        for path in ("/api/state", "/metrics", "/static/app.js", "/files/outbox/sample.png"):
            with urllib.request.urlopen(base + path, timeout=10) as r:
                r.read()
            counter[0] += 1
        stop.wait(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=18751)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nstd-web-cost-"))
    cfg = config_mod.parse({"paths": {k: k for k in ("inbox", "outbox", "failed", "archive", "state")},
                            "http": {"listen": f"127.0.0.1:{args.port}"}}, "bench", tmp)
    for p in (cfg.paths.inbox, cfg.paths.outbox, cfg.paths.failed, cfg.paths.archive, cfg.paths.state / "status"):
        p.mkdir(parents=True, exist_ok=True)
    weights = load_weights(str(REAL_WEIGHTS)) if REAL_WEIGHTS.is_file() else None
    if weights is None:
        print("bench: the real weights are not in ../shared/weights", file=sys.stderr)
        return 2
    engine = Engine(weights)
    content, style = load_image(IMAGES["tubingen"]), load_image(IMAGES["starry_night"])
    save_image(cfg.paths.outbox / "sample.png", content.rgb[:256, :256])
    board = StatusBoard("bench")
    web = WebServer(lambda: cfg, board, Metrics(), lambda: True, lambda: True)
    web.start()
    base = f"http://127.0.0.1:{args.port}"
    steady_steps(engine, content, style, args.size, 3)  # compile once, outside the comparison
    quiet, served, requests = [], [], [0]
    for _ in range(args.rounds):
        quiet += steady_steps(engine, content, style, args.size, args.iterations)
        stop = threading.Event()
        poller = threading.Thread(target=poll, args=(base, stop, requests))
        poller.start()
        served += steady_steps(engine, content, style, args.size, args.iterations)
        stop.set()
        poller.join()
    web.stop()
    q, s = statistics.median(quiet), statistics.median(served)
    spread = statistics.quantiles(quiet, n=4)
    print(f"weights: {weights.source}; {args.size} px, {len(quiet)} steady steps each way, {requests[0]} requests served")
    print(f"step, quiet:  median {q:.4f} s (quartiles {spread[0]:.4f}–{spread[2]:.4f})")
    print(f"step, served: median {s:.4f} s ({(s / q - 1) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

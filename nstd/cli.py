"""The ``nstd`` command line: stylize one job, manage weights, run and drive the daemon."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from nstd import __version__
from nstd.errors import NstdError, ParamError
from nstd.images import DEFAULT_MAX_PIXELS
from nstd.untrusted import YAML_BYTES


class ProgressLine:
    """A one-line progress bar on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream=sys.stderr, every: float = 5.0) -> None:
        self.stream, self.every = stream, every
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        final = p.iteration == p.iterations and p.tile == p.tiles
        if not self.tty and now - self.last < self.every and not final:
            return
        self.last = now
        tile = f"  tile {p.tile}/{p.tiles}" if p.tiles else ""
        frame = f"frame {p.frame}/{p.frames}  " if hasattr(p, "frame") else ""  # a clip
        line = (f"{frame}scale {p.scale}/{p.scales}{tile}  iteration {p.iteration}/{p.iterations}  loss {p.loss:.4g} "
                f"(content {p.content:.3g}, style {p.style:.3g}, tv {p.tv:.3g})  {p.elapsed:.1f}s  {p.eta_text}")
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def stylize_params(args: argparse.Namespace) -> Any:
    """``nstd stylize``'s parameters: the options, then ``--set``, resolved (a still's or a clip's)."""
    from nstd.params import parse_set, resolve

    raw: dict[str, Any] = {}
    for key in ("preset", "size", "iterations", "seed", "strength"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    raw.update(parse_set(args.set or []))
    return resolve(raw, where="nstd stylize")


def load_engine(args: argparse.Namespace) -> tuple[Any, Any, float]:
    """The weights and an engine as the options say, and the seconds loading took (said on stderr)."""
    from nstd.config import parse_bytes
    from nstd.engine import Engine, load_weights

    t0 = time.monotonic()
    weights = load_weights(args.weights)
    engine = Engine(weights, memory_limit=parse_bytes(args.memory, "--memory") if args.memory else None,
                    compute=args.compute, compiler=args.compiler)
    load_s = time.monotonic() - t0
    print(f"nstd: weights {weights.source} ({weights.format}) loaded in {load_s:.1f}s on {engine.device}",
          file=sys.stderr)
    return weights, engine, load_s


def cmd_stylize(args: argparse.Namespace) -> int:
    from nstd.engine.regions import describe as describe_regions
    from nstd.engine.regions import load_regions
    from nstd.images import FORMATS, load_image, save_image
    from nstd.params import fit_print
    from nstd.spool.report import job_report, write_report

    from nstd.video.clip import is_clip_path

    if is_clip_path(Path(args.content)):  # a video clip (or a folder of frames): frame by frame
        from nstd.video.cli import cmd_stylize_clip

        return cmd_stylize_clip(args)
    out = Path(args.output)
    if out.suffix.lower() not in FORMATS:
        raise ParamError(f"-o {out}: extension {out.suffix or '(none)'} is not supported; use one of "
                         f"{', '.join(sorted(FORMATS))}.")
    _check_output(out, [Path(args.content), *map(Path, args.styles)], args.force)
    if args.region and args.styles:
        raise ParamError("with --region, give the styles in the regions (--region MASK=STYLE), not as STYLE.")
    params = stylize_params(args)
    content = load_image(Path(args.content), args.max_pixels)
    params = fit_print(params, content.size, where="nstd stylize")
    styles = [(load_image(Path(s), args.max_pixels), 1.0) for s in args.styles]
    regions = load_regions(parse_region_args(args.region or []), lambda p: load_image(p, args.max_pixels))
    if not styles and not regions:
        raise ParamError("give at least one STYLE image, or --region MASK=STYLE.")
    init_image = None
    if params.init not in ("noise", "content", "style"):
        init_image = load_image(Path(params.init), args.max_pixels)
    weights, engine, load_s = load_engine(args)
    bar = ProgressLine()
    result = engine.stylize(content, styles, params, init_image=init_image, progress=bar, regions=regions,
                            plan=lambda plan: print(f"plan: {plan.describe()}", file=sys.stderr, flush=True))
    bar.close()
    written = save_image(out, result.image, result.alpha, dpi=params.dpi, quality=params.jpeg_quality)
    report = job_report(status="done", result=result, params=params, content=content, styles=styles,
                        **describe_regions(regions),
                        weights=weights, output=str(written), device=engine.device,
                        timings={"weights_load": round(load_s, 3)})
    report_path = write_report(out.with_name(out.stem + ".report.yaml"), report)
    print(f"nstd: wrote {written} and {report_path} (seed {result.seed}, loss {result.initial['loss']:.4g} → "
          f"{result.final['loss']:.4g}, {result.iterations} iterations, stopped by {result.stopped_by})",
          file=sys.stderr)
    return 0


def parse_region_args(items: list[str]) -> list[tuple[Path, list[tuple[Path, float]]]]:
    """``--region MASK=STYLE[,STYLE…]``; ``--region MASK=`` keeps the content in that mask."""
    out = []
    for item in items:
        mask, sep, styles = item.partition("=")
        if not sep or not mask:
            raise ParamError(f"--region {item!r}: expected MASK=STYLE (or MASK= for no style there).")
        out.append((Path(mask), [(Path(s), 1.0) for s in styles.split(",") if s]))
    return out


def _check_output(out: Path, inputs: list[Path], force: bool) -> None:
    """Before hours of work: the output must not be an input, nor exist (without --force),
    and its folder must be writable."""
    report = out.with_name(out.stem + ".report.yaml")
    for path in (out, report):
        if any(path.exists() and i.exists() and os.path.samefile(path, i) for i in inputs):
            raise NstdError(f"-o {out}: {path} is one of the inputs; choose another output name.")
        if path.exists() and not force:
            raise NstdError(f"-o {out}: {path} already exists; choose another name or add --force to replace it.")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise NstdError(f"-o {out}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NstdError(f"-o {out}: cannot write into {folder} (permission denied).")


def cmd_weights_convert(args: argparse.Namespace) -> int:
    from nstd.engine.weights import load_weights, save_npz

    w = load_weights(args.input)
    out = save_npz(w, Path(args.output), fp16=args.fp16)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {'float16' if args.fp16 else 'float32'}) from "
          f"{w.source} ({w.format}, sha256 {w.sha256})")
    return 0


def cmd_weights_info(args: argparse.Namespace) -> int:
    from nstd.engine.weights import describe, load_weights

    print(describe(load_weights(args.path)))
    return 0


def _config(args: argparse.Namespace):
    from nstd import config

    return config.load(args.config or config.default_path())


def cmd_run(args: argparse.Namespace) -> int:
    from nstd import config
    from nstd.daemon import service

    return service.run(args.config or config.default_path())


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config and any job YAML files; say exactly what is wrong."""
    from nstd.spool import jobs
    from nstd.params import fit_print, layered, resolve

    problems = 0
    cfg = None
    if args.config or not args.jobs:
        try:
            cfg = _config(args)
            print(f"ok: config {cfg.source} (inbox {cfg.paths.inbox}, weights {cfg.weights})")
        except NstdError as exc:
            print(f"error: {exc}", file=sys.stderr)
            problems += 1
    max_yaml = cfg.limits.yaml_bytes if cfg else YAML_BYTES
    for job in args.jobs:
        path = Path(job)
        try:
            if path.name == "job.yaml":  # a folder job
                spec = jobs.load_spec(path.parent.name, "folder", path.parent.parent, max_yaml)
            else:
                spec = jobs.load_spec(path.stem, "yaml", path.parent, max_yaml)
            params = resolve(layered(cfg.defaults if cfg else {}, spec.raw_params), where=path.name)
            from nstd.video.clip import is_clip_path

            if cfg and is_clip_path(spec.content):  # a clip: its header against the limits
                from nstd.video.clip import Clip, ClipLimits

                with Clip(spec.content, ClipLimits.of(cfg.limits)) as clip:
                    jobs.check_limits(params, (clip.info.width, clip.info.height), cfg.limits, path.name)
                    clip.check_length(params.start, params.duration)
            elif cfg:
                from nstd.images import load_image

                content = load_image(spec.content, cfg.limits.input_pixels)
                params = fit_print(params, content.size, cfg.limits.size, path.name)
                jobs.check_limits(params, content.size, cfg.limits, path.name)
                print(memory_lines(params, content.size, cfg.limits.memory))
            print(f"ok: job {path} (content {spec.content.name}, {len(spec.styles)} style(s))")
        except NstdError as exc:
            print(f"error: {exc}", file=sys.stderr)
            problems += 1
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            problems += 1
    return 1 if problems else 0


def memory_lines(params: Any, content_size: tuple[int, int], limit: int | None) -> str:
    """The job's scales with their memory on paper, against what the daemon may use."""
    from nstd.engine import memory, plan

    total = limit if limit is not None else memory.machine_memory()
    available = int(max(0, total - plan.PROCESS_BYTES) * memory.SAFETY)
    scales = plan.memory_plan(*plan.check_size(*content_size, params.size), params, available)
    peak = plan.PROCESS_BYTES + max(m.peak for m in scales)
    return "\n".join(["  " + line for line in plan.describe_memory(scales).splitlines()] +
                     [f"  peak about {peak / 2**30:.1f} GiB of {total / 2**30:.1f} GiB"])


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from nstd.daemon.status import read_all
    from nstd.spool import outbox

    cfg = _config(args)
    folder = cfg.paths.state / "status"
    daemons = read_all(folder)
    from nstd.spool.jobs import daemon_liveness

    for d in daemons:
        d["alive"], d["liveness"] = daemon_liveness(d, cfg.service.lease_timeout)
    live = [d for d in daemons if d["alive"]]
    if args.json:
        print(json.dumps({"daemons": daemons}, indent=1))
        return 0 if live else 3
    if not daemons:
        print(f"no daemon is running for {cfg.paths.inbox} (no status under {folder})")
        return 3
    for d in daemons:
        if not d["alive"]:
            print(f"daemon {d.get('host')} pid {d.get('pid')}: NOT RUNNING ({d['liveness']}); last state "
                  f"{d.get('state')}")
            continue
        print(f"daemon {d['host']} pid {d['pid']}: {d['state']} on {d.get('device')} ({d['liveness']})")
        cur = d.get("current")
        if cur:
            clip = f" frame {cur['frame']}/{cur.get('frames', '?')}" if cur.get("frame") else ""
            print(f"  running: {cur['name']}{clip} scale {cur.get('scale', '-')}/{cur.get('scales', '-')} iteration "
                  f"{cur.get('iteration', 0)}/{cur.get('iterations', '?')} loss {cur.get('loss', '-')} "
                  f"ETA {cur.get('eta', '?')}s")
            preview = outbox.preview_of(cfg, cur["name"])
            if preview.is_file():  # a clip's last finished frame, a print's picture so far
                print(f"  preview: {preview}")
        for q in d.get("queue", []):
            print(f"  queued:  {q['name']} ({q['form']}{', ' + q['waiting_for'] if q.get('waiting_for') else ''})")
        for w in d.get("waiting", []):
            print(f"  waiting: {w['name']}: {w['reason']}")
        for r in d.get("recent_done", [])[-5:]:
            print(f"  done:    {r['name']} → {r['output']}")
        for r in d.get("recent_failed", [])[-5:]:
            print(f"  failed:  {r['name']}: {r['error']}")
    fleet = max((d for d in live if d.get("fleet")), key=lambda d: d.get("updated", 0), default={}).get("fleet")
    if fleet:  # the shared queue, as its server last told the freshest daemon
        age = fleet.get("oldest_age")
        print(f"fleet queue ({fleet['backend']} at {fleet['url']}): {fleet.get('waiting') or 0} waiting, "
              f"{fleet.get('running') or 0} running on {len(live)} live worker(s); oldest entry "
              f"{'-' if age is None else f'{age:.0f}s'} old")
        for entry, owner in sorted((fleet.get("owners") or {}).items()):
            print(f"  entry {entry} held by {owner}")
    if not live:
        print("no live daemon: the status files above are left over from daemons that stopped or crashed")
    return 0 if live else 3


def cmd_submit(args: argparse.Namespace) -> int:
    """Drop a folder job into the inbox atomically (hidden while it is being written)."""
    from nstd.params import parse_set
    from nstd.spool.submit import submit
    from nstd.untrusted import read_regular

    cfg = _config(args)

    def read(path: str) -> tuple[str, bytes]:
        return path, read_regular(Path(path), cfg.limits.input_bytes, "image", "limits.input_bytes")

    target = submit(cfg, args.name or Path(args.content).stem, read(args.content), [read(s) for s in args.styles],
                    parse_set(args.set or []))
    print(f"submitted {target}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from nstd.spool import outbox

    cfg = _config(args)
    try:
        moved = outbox.retry(cfg, args.name)
    except (FileNotFoundError, FileExistsError) as exc:
        raise ParamError(str(exc)) from None
    print(f"put back into the inbox: {', '.join(str(p) for p in moved)}")
    return 0


def add_stylize_parser(sub: Any) -> None:
    """``nstd stylize``: its options are most of the CLI, so they get a function of their own."""
    s = sub.add_parser("stylize", help="stylize one image now")
    s.add_argument("content", help="a picture, or a clip: a video file, an animated GIF/WebP or a folder of "
                                   "numbered frames (docs/video.md)")
    s.add_argument("styles", nargs="*", metavar="STYLE")
    s.add_argument("-o", "--output", required=True, help="output image (.png .jpg .webp .tiff); for a clip .mp4 (H.264, "
                                                    "sound kept), .mov .mkv .webm .gif .webp, or .png for a folder "
                                                    "of frames")
    s.add_argument("--region", action="append", metavar="MASK=STYLE",
                   help="spatial control: the mask's white part gets STYLE (comma-separate several; MASK= keeps "
                        "the content there); repeatable")
    s.add_argument("--weights", default="imagenet", help="imagenet (default), or a .mat/.h5/.npz path")
    s.add_argument("--size", type=int, help="longest side of the output in pixels")
    s.add_argument("--iterations", type=int, help="iterations at full size; each coarser scale adds "
                                                  "coarse_iterations (default 20), and the report counts all")
    s.add_argument("--strength", type=float, help="0 (the content) to 1 (the style); default 0.5")
    s.add_argument("--force", action="store_true", help="replace OUT and its report if they exist")
    s.add_argument("--seed", type=int)
    s.add_argument("--preset", help="default | origin")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="any job parameter (repeatable)")
    s.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger input images")
    s.add_argument("--compute", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="the convolutions' number format; auto: the fastest this machine has that keeps the "
                        "result (measured once per image size)")
    s.add_argument("--compiler", choices=("auto", "xla", "graph"), default="auto",
                   help="XLA or TensorFlow's graph executor; auto: measured")
    s.add_argument("--memory", help="memory the job may use, e.g. 8G (default: the machine's); larger jobs are "
                                    "refined in tiles")
    s.set_defaults(func=cmd_stylize)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nstd", description="Neural style transfer: one-off jobs and a daemon.")
    p.add_argument("--version", action="version", version=f"nstd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    add_stylize_parser(sub)

    w = sub.add_parser("weights", help="inspect or convert VGG-19 weight files")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    c = wsub.add_parser("convert", help="write a compact conv-only .npz that loads fastest")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--fp16", action="store_true", help="store float16 (half the size)")
    c.set_defaults(func=cmd_weights_convert)
    i = wsub.add_parser("info", help="format, layers, shapes and sha256 of a weights file")
    i.add_argument("path")
    i.set_defaults(func=cmd_weights_info)

    def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--config", help="config file (default: $NSTD_CONFIG or /etc/nstd/config.yaml)")
        return parser

    r = with_config(sub.add_parser("run", help="run the daemon: watch the inbox, stylize, write the outbox"))
    r.set_defaults(func=cmd_run)
    ch = with_config(sub.add_parser("check", help="validate a config and/or job YAML files"))
    ch.add_argument("jobs", nargs="*", metavar="JOB.yaml")
    ch.set_defaults(func=cmd_check)
    st = with_config(sub.add_parser("status", help="queue, current job and recent results of running daemons"))
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    sb = with_config(sub.add_parser("submit", help="drop a job into the inbox atomically"))
    sb.add_argument("content")
    sb.add_argument("styles", nargs="+", metavar="STYLE")
    sb.add_argument("--set", action="append", metavar="KEY=VALUE")
    sb.add_argument("--name")
    sb.set_defaults(func=cmd_submit)
    rt = with_config(sub.add_parser("retry", help="put a failed job back into the inbox"))
    rt.add_argument("name", help="its folder under failed/, e.g. NAME or sub/NAME")
    rt.set_defaults(func=cmd_retry)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NstdError as exc:  # the one place where errors become exit codes
        from nstd.daemon.logs import on_journal

        print(f"{'<3>' if on_journal() else ''}nstd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nstd: interrupted", file=sys.stderr)
        return 130

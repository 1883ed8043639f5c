"""``nstd stylize CLIP STYLE… -o OUT.mp4``: a clip from the command line.

The finished frames are kept in a hidden folder beside the output
(``.OUT.mp4.nstd-work/``) until the video is written, so the same command run again after
Ctrl-C or a crash resumes at the first unfinished frame.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from nstd.errors import ParamError


def work_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.nstd-work"


def cmd_stylize_clip(args: argparse.Namespace) -> int:
    from nstd.cli import ProgressLine, _check_output, load_engine, stylize_params
    from nstd.images import load_image
    from nstd.video.clip import Clip, ClipLimits
    from nstd.video.clip_job import sha256_file, stylize_clip
    from nstd.video.encode import output_kind

    out, content = Path(args.output), Path(args.content)
    kind = output_kind(out)
    if args.region:
        raise ParamError("--region is for still pictures; a clip's frames have no masks of their own.")
    if not args.styles:
        raise ParamError("give at least one STYLE image.")
    shown = out.with_suffix("") if kind == "frames" else out
    _check_output(shown, [content, *map(Path, args.styles)], args.force)
    params = stylize_params(args)
    if params.init not in ("noise", "content", "style"):
        raise ParamError(f"init: {params.init}: a clip starts from content, noise or style (later frames start from "
                         "the previous one).")
    styles = [(load_image(Path(s), args.max_pixels), 1.0) for s in args.styles]
    with Clip(content, ClipLimits(args.max_pixels, float("inf"), 10**9)) as clip:
        info = clip.info
        seconds = "?" if info.duration is None else f"{info.duration:.2f}"
        sound = f", sound {info.audio}" if info.audio else ""
        print(f"nstd: {content.name}: {info.codec} {info.width}x{info.height}, {info.fps:.3g} fps, {seconds} s{sound}",
              file=sys.stderr)
        weights, engine, load_s = load_engine(args)
        sha = sha256_file(content)
        work = work_folder(out)
        bar = ProgressLine()

        def say(message: str, *a: Any, **_: Any) -> None:
            bar.close() if bar.tty else None
            print("nstd: " + (message % a if a else message), file=sys.stderr)

        result = stylize_clip(engine, clip, styles, params, out, work, key=json_key(params) + "|" + sha,
                              progress=bar, log=say, overwrite=True)
    bar.close()
    report_clip(result, params, content, sha, styles, weights, engine, load_s, shown)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report_clip(result: Any, params: Any, content: Path, sha: str, styles: list, weights: Any, engine: Any,
                load_s: float, shown: Path) -> None:
    """The clip's report beside the output, and what was written, on stderr."""
    from nstd.spool.report import job_report, write_report
    from nstd.video.clip_job import ClipContent

    info = result.info
    report = job_report(status="done", result=result, params=params,
                        content=ClipContent(str(content), sha, (info.width, info.height)), styles=styles,
                        weights=weights, output=str(result.output), device=engine.device,
                        history_every=max(1, len(result.history) // 100), timings={"weights_load": round(load_s, 3)},
                        **result.report())
    report_path = write_report(shown.with_name(shown.stem + ".report.yaml"), report)
    for note in result.notes:
        print(f"nstd: note: {note}", file=sys.stderr)
    print(f"nstd: wrote {result.output} and {report_path} ({result.used['frames']} frames, "
          f"{result.timings['first_frame']:.1f}s for the first, "
          f"{result.timings['later_frame_mean'] or 0:.2f}s for each later one; seed {result.seed})", file=sys.stderr)


def json_key(params: Any) -> str:
    import json

    return json.dumps(params.as_dict(), sort_keys=True, default=str)


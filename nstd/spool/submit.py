"""A job dropped into the inbox by nstd itself (``nstd submit``, the web page's upload).

It goes the way files copied onto the share go, so everything after it is shared: a
folder job written under a hidden name, fsynced, then renamed into place in one step.
Everything is checked first (parameters, image headers, sizes), so a bad upload is
refused with its reason instead of turning into a failed job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nstd.atomic import fsync_dir
from nstd.config import Config
from nstd.errors import NstdError
from nstd.images import decode_image
from nstd.spool.jobs import IMAGE_EXTS, VIDEO_EXTS, safe_name
from nstd.params import layered, resolve

MAX_STYLES = 8


class SubmitError(NstdError):
    phase = "submit"


def submit(cfg: Config, name: str, content: tuple[str, bytes], styles: list[tuple[str, bytes]],
           raw: dict[str, Any]) -> Path:
    """Write ``content`` and ``styles`` ((file name, bytes) each) with ``raw`` parameters as
    a new folder job; returns its folder in the inbox."""
    if not styles:
        raise SubmitError("a job needs at least one style image")
    if len(styles) > MAX_STYLES:
        raise SubmitError(f"{len(styles)} style images is over the limit of {MAX_STYLES}")
    resolve(layered(cfg.defaults, raw), where="the job's parameters")
    parts = []
    for role, (filename, data) in [("content", content)] + [(f"style{i}", s) for i, s in enumerate(styles, 1)]:
        suffix = Path(filename).suffix.lower()
        if role == "content" and suffix in VIDEO_EXTS:  # a clip: its first bytes here, the rest in the daemon
            from nstd.video.clip import check_head

            if len(data) > cfg.limits.input_bytes:
                raise SubmitError(f"{Path(filename).name}: {len(data):,} bytes is over the limit of "
                                  f"{cfg.limits.input_bytes:,} (limits.input_bytes)")
            check_head(data[:512], Path(filename).name)
            parts.append((role + suffix, data))
            continue
        if suffix not in IMAGE_EXTS:
            raise SubmitError(f"{Path(filename).name}: not an image nstd reads ({', '.join(sorted(IMAGE_EXTS))})")
        if len(data) > cfg.limits.input_bytes:
            raise SubmitError(f"{Path(filename).name}: {len(data):,} bytes is over the limit of "
                              f"{cfg.limits.input_bytes:,} (limits.input_bytes)")
        decode_image(data, Path(filename), cfg.limits.input_pixels)  # pixels from the header first
        parts.append((role + suffix, data))
    stem = safe_name(name)
    target, n = cfg.paths.inbox / stem, 1
    while target.exists():
        target, n = cfg.paths.inbox / f"{stem}-{n}", n + 1
    tmp = cfg.paths.inbox / f".{target.name}.submitting"
    tmp.mkdir(parents=True)
    for filename, data in parts + [("job.yaml", (yaml.safe_dump(raw, sort_keys=False) if raw else "{}\n").encode())]:
        with open(tmp / filename, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    os.rename(tmp, target)
    fsync_dir(target.parent)
    return target

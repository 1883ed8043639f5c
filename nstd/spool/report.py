"""The machine-readable job report (YAML), shared by ``nstd stylize`` and the daemon."""

from __future__ import annotations

import platform
import socket
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nstd import __version__
from nstd.atomic import write_atomic


def versions() -> dict[str, str]:
    import PIL
    import scipy
    import tensorflow as tf

    return {"nstd": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__}


def _plain(value: Any) -> Any:
    """numpy scalars/arrays → plain Python so the YAML stays readable by anything."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def job_report(*, status: str, result: Any, params: Any, content: Any, styles: list, weights: Any,
               output: str | None, device: str, timings: dict[str, float] | None = None,
               history_every: int = 1, **extra: Any) -> dict[str, Any]:
    """Everything needed to understand and reproduce a job."""
    history = result.history[::max(1, history_every)] if result else []
    if result and result.history and history[-1] is not result.history[-1]:
        history.append(result.history[-1])
    iters = result.iterations if result else 0
    opt = result.timings.get("optimize", 0.0) if result else 0.0
    out_size = list(result.shapes[-1]) if result and result.shapes else None
    upscaled = None  # the engine resizes the photo to each scale with Lanczos, up as well as down
    if out_size and max(out_size) > max(content.size):
        upscaled = {"from": list(content.size), "to": out_size, "method": "lanczos"}
    report = {
        "status": status,
        "output": output,
        "inputs": {
            "content": {"path": content.path, "sha256": content.sha256, "size": list(content.size)},
            "styles": [{"path": s.path, "sha256": s.sha256, "size": list(s.size), "weight": w} for s, w in styles],
        },
        "parameters": {**params.as_dict(), **({"seed": result.seed} if result else {})},
        "seed": result.seed if result else params.seed,
        "losses": {"start": result.initial, "end": result.final, "history": history} if result else {},
        "iterations": iters,
        "evaluations": result.evaluations if result else 0,
        "stopped_by": result.stopped_by if result else None,
        "shapes": [list(s) for s in result.shapes] if result else [],
        "upscaled": upscaled,
        "notes": list(result.notes) if result else [],
        "timings": {**(result.timings if result else {}), **(timings or {}),
                    "seconds_per_iteration": round(opt / iters, 4) if iters else None},
        "device": device,
        "precision": list(getattr(result, "precision", []) or []) if result else [],
        "host": socket.gethostname(),
        "versions": versions(),
        "weights": {"path": weights.source, "format": weights.format, "sha256": weights.sha256},
        **extra,
    }
    return _plain(report)


def relocate_inputs(report: dict[str, Any], old: Path, new: Path | None) -> dict[str, Any]:
    """Input paths under ``old`` (the work folder, gone after the job) as they will be under
    ``new`` (the archive), or marked deleted when originals are not kept."""
    def moved(path: str) -> str:
        try:
            rel = Path(path).relative_to(old)
        except ValueError:
            return path
        return str(new / rel) if new is not None else f"(deleted after success: {rel})"

    inputs = report["inputs"]
    inputs["content"]["path"] = moved(inputs["content"]["path"])
    for s in inputs["styles"]:
        s["path"] = moved(s["path"])
    return report


def dump(report: dict[str, Any]) -> bytes:
    return yaml.safe_dump(report, sort_keys=False, allow_unicode=True, width=120).encode()


def write_report(path: Path, report: dict[str, Any], mode: int | None = None) -> Path:
    return write_atomic(Path(path), lambda fh: fh.write(dump(report)), mode)

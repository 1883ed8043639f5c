"""Contact sheets: rows of labelled images in one PNG, to look at before believing a number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_H = 30


def tile(rgb: np.ndarray | Image.Image, height: int, label: str = "") -> Image.Image:
    """``rgb`` scaled to ``height`` with up to two lines of ``label`` under it."""
    im = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    im = im.convert("RGB")
    w = max(1, round(im.width * height / im.height))
    out = Image.new("RGB", (w, height + LABEL_H), "white")
    out.paste(im.resize((w, height), Image.LANCZOS), (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(label.split("\n")[:2]):
        draw.text((3, height + 2 + 13 * i), line, fill="black")
    return out


def sheet(rows: list[list[Image.Image]], path: Path, gap: int = 4) -> Path:
    """Lay out rows of tiles (each row left to right) and save as PNG."""
    width = max(sum(t.width for t in row) + gap * (len(row) - 1) for row in rows)
    height = sum(max(t.height for t in row) for row in rows) + gap * (len(rows) - 1)
    out = Image.new("RGB", (width, height), (235, 235, 235))
    y = 0
    for row in rows:
        x = 0
        for t in row:
            out.paste(t, (x, y))
            x += t.width + gap
        y += max(t.height for t in row) + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python bench/sheet.py OUT --row LABEL=IMAGE,LABEL=IMAGE … [--row …]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Lay out labelled images in rows, one PNG or JPEG.")
    ap.add_argument("out")
    ap.add_argument("--row", action="append", required=True, metavar="LABEL=IMAGE,…")
    ap.add_argument("--height", type=int, default=240)
    args = ap.parse_args(argv)
    rows = [[tile(Image.open(path), args.height, label.replace("\\n", "\n"))
             for label, path in (cell.split("=", 1) for cell in row.split(","))] for row in args.row]
    out = sheet(rows, Path(args.out).with_suffix(".png"))
    if Path(args.out).suffix.lower() in (".jpg", ".jpeg"):
        Image.open(out).save(args.out, quality=88)
        out.unlink()
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

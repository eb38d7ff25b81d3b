"""A user's own data: an ImageFolder of generated coloured shapes (circle, square,
triangle), RGB, 32x32, in DIR/train/CLASS/*.png and DIR/val/CLASS/*.png.

    python tests/shapes.py DIR [--train 300] [--val 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def _draw(kind: str, rng: np.random.Generator, size: int) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 110, 3))
    colour = tuple(int(v) for v in rng.integers(140, 256, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return image


def make_shapes(
    root: Path, *, train: int = 300, val: int = 30, size: int = 32, seed: int = 0
) -> Path:
    """Write the folder (``train`` and ``val`` images per class) and return ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _draw(kind, rng, size).save(folder / f"{i:04d}.png")
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=30)
    args = parser.parse_args()
    print(make_shapes(args.root, train=args.train, val=args.val))

"""Write a tiny image folder to data/shapes/ beside this script (or to the folder given): 16x16 drawings of
circles, squares and crosses, one subfolder a class (the ImageFolder layout; offline, seeded). Run it, then train:

    python examples/image-folder/make_images.py
    tui-trainer --headless --preset examples/image-folder/shapes.yaml
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

PER_CLASS = 120
SIDE = 16


def draw(kind: str, rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(0, 90) for _ in range(3))
    colour = tuple(rng.randint(150, 255) for _ in range(3))
    image = Image.new("RGB", (SIDE, SIDE), background)
    pen = ImageDraw.Draw(image)
    size = rng.randint(6, 12)
    left, top = rng.randint(0, SIDE - size), rng.randint(0, SIDE - size)
    box = (left, top, left + size - 1, top + size - 1)
    if kind == "circle":
        pen.ellipse(box, fill=colour)
    elif kind == "square":
        pen.rectangle(box, fill=colour)
    else:
        middle_x, middle_y = left + size // 2, top + size // 2
        pen.line((left, middle_y, left + size - 1, middle_y), fill=colour, width=2)
        pen.line((middle_x, top, middle_x, top + size - 1), fill=colour, width=2)
    return image


def main(root: Path) -> Path:
    rng = random.Random(0)
    for kind in ("circle", "square", "cross"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index in range(PER_CLASS):
            draw(kind, rng).save(root / kind / f"{index:03d}.png")
    return root


if __name__ == "__main__":
    default = Path(__file__).resolve().parent / "data" / "shapes"
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))

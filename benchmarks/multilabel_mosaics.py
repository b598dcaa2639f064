"""A multi-label photo set made from photos we have: 2 x 2 mosaics of weather and clothing photos.

Each mosaic's labels are the classes of its four tiles (a tile is a quarter of the photo: the
object-in-a-corner case), each source photo is used once, and a seed fixes everything. The
labels go to a CSV of space-separated label sets, the format `photoclass train` reads.

    python benchmarks/multilabel_mosaics.py --out /tmp/mosaics --photos 800
    photoclass train /tmp/mosaics/labels.csv --out runs/mosaics
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from photoclass.data.decode import decode_photo
from photoclass.data.scan import scan_folder

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
TILE = 160  # px: mosaics of 320 x 320


def sources(roots: list[Path]) -> list[tuple[Path, str]]:
    """(photo, class) of every readable photo under `roots`, as photoclass scans them."""
    found = []
    for root in roots:
        result = scan_folder(root)
        found += [(p.path, p.label) for p in result.photos if p.label]
    return sorted(found)


def mosaics(photos: list[tuple[Path, str]], count: int, seed: int):
    """`count` mosaics of four photos each, drawn without replacement; yields (pixels, labels)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))[: 4 * count]
    for start in range(0, len(order) - 3, 4):
        tiles = [photos[i] for i in order[start : start + 4]]
        canvas = np.zeros((2 * TILE, 2 * TILE, 3), np.uint8)
        for k, (path, _) in enumerate(tiles):
            tile = decode_photo(path, size=TILE).to_array()
            canvas[(k // 2) * TILE : (k // 2 + 1) * TILE, (k % 2) * TILE : (k % 2 + 1) * TILE] = tile
        yield canvas, sorted({label for _, label in tiles})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=800, help="mosaics to make (4 source photos each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, nargs="+", default=[DATA / "weather", DATA / "clothing_small"])
    args = parser.parse_args()
    photos = sources(args.data)
    if 4 * args.photos > len(photos):
        parser.error(f"{args.photos} mosaics need {4 * args.photos} photos; the data has {len(photos)}")
    (args.out / "photos").mkdir(parents=True, exist_ok=False)
    rows = []
    for i, (pixels, labels) in enumerate(mosaics(photos, args.photos, args.seed)):
        name = f"photos/m{i:04d}.jpg"
        Image.fromarray(pixels).save(args.out / name, quality=92)
        rows.append((name, " ".join(labels)))
    with open(args.out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    per_photo = np.mean([len(r[1].split()) for r in rows])
    print(
        f"{len(rows)} mosaics from {4 * len(rows)} of {len(photos)} photos, {per_photo:.2f} labels a mosaic: {args.out}"
    )


if __name__ == "__main__":
    main()

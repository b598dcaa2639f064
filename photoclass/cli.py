"""The command line: parse, call the Python API, print. No logic of its own."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import PrepareConfig, SPLIT_MODES
from .data.scan import LAYOUTS
from .errors import PhotoclassError


def _add_prepare_options(p: argparse.ArgumentParser) -> None:
    d = PrepareConfig()
    p.add_argument("--image-size", type=int, default=d.image_size, help="side in px (default %(default)s)")
    p.add_argument("--val-size", type=float, default=d.val_size, help="fraction (default %(default)s)")
    p.add_argument("--test-size", type=float, default=d.test_size, help="fraction (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="split seed (default %(default)s)")
    p.add_argument("--split", choices=SPLIT_MODES, default=d.split,
                   help="grouped keeps duplicate photos in one split (default); naive does not")
    p.add_argument("--layout", choices=LAYOUTS, default=d.layout,
                   help="flat (label in file name), folders (one per class), split (train/val/test)")
    p.add_argument("--label-regex", default=None,
                   help="regex with one group for the label in flat folders (default: leading letters)")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symlinks inside the folder")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="refuse larger images (default %(default)s)")
    p.add_argument("--cache-dir", default=None, help="decode cache (default $XDG_CACHE_HOME/photoclass)")
    p.add_argument("--workers", type=int, default=d.workers, help="decoding processes (default: one per core)")


def _prepare_config(args) -> PrepareConfig:
    return PrepareConfig(
        image_size=args.image_size, val_size=args.val_size, test_size=args.test_size,
        seed=args.seed, split=args.split, layout=args.layout, label_regex=args.label_regex,
        follow_symlinks=args.follow_symlinks, max_pixels=args.max_pixels,
        cache_dir=args.cache_dir, workers=args.workers,
    )


def cmd_prepare(args) -> int:
    from .data.prepare import prepare
    from .data.summary import format_summary

    out = Path(args.out) if args.out else Path("prepared") / Path(args.data).resolve().name
    dataset = prepare(args.data, out=out, config=_prepare_config(args))
    print(json.dumps(dataset.summary, indent=2, ensure_ascii=False) if args.json
          else format_summary(dataset.summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="photoclass",
        description="From a folder of photos to a trained, evaluated, servable image classifier.",
    )
    parser.add_argument("--version", action="version", version=f"photoclass {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("prepare", help="scan, check, deduplicate and split a folder of photos",
                       description="Scan DATA, decode every photo once into the cache, group "
                       "duplicates and write DIR/manifest.csv with a fair split.")
    p.add_argument("data", metavar="DATA", help="folder of photos")
    p.add_argument("--out", metavar="DIR", help="output folder (default prepared/<DATA name>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_prepare_options(p)
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PhotoclassError as e:
        print(f"photoclass: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("photoclass: interrupted; finished work is kept in the cache", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

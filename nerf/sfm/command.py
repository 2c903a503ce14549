"""The `nerf-process` command line (tools/colmap2nerf.py): photos, a video or a COLMAP model in.

One flag per `SfmConfig` field (`--max-image-size`, `--no-shared-camera`, ...), plus the input,
`--out`, `--colmap-model` with `--images` (import an existing model without pycolmap), `--quiet`
and `--verbose`. Prints the summary as JSON; exit status 2 with a message on a NerfError.
"""

import dataclasses
import json
import logging
from pathlib import Path

from nerf.sfm.reconstruct import SfmConfig, import_colmap_model, run_sfm


def build_parser():
    """argparse parser: the input, --out, the import options and one flag per SfmConfig field."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="nerf-process", description="Photos or a video -> posed scene (transforms.json, images/, sparse/0).")
    parser.add_argument("input", nargs="?", type=Path, help="folder of images or a video file")
    parser.add_argument("--out", type=Path, required=True, help="scene folder to write")
    parser.add_argument("--colmap-model", type=Path, help="existing COLMAP model folder (e.g. sparse/0): skip SfM")
    parser.add_argument("--images", type=Path, help="image folder of --colmap-model")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--verbose", action="store_true", help="also COLMAP's own log")
    for f in dataclasses.fields(SfmConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f"default: {f.default}")
    return parser


def cli(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 with a message on a SceneError)."""
    from nerf.errors import NerfError

    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="[nerf-process] %(message)s")
    if (args.colmap_model is None) == (args.input is None):
        parser.error("give either an input (photo folder or video) or --colmap-model with --images")
    if args.colmap_model is not None and args.images is None:
        parser.error("--colmap-model needs --images (the folder of the model's images)")
    try:
        cfg = SfmConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SfmConfig)})
        if args.colmap_model is not None:
            summary = import_colmap_model(args.colmap_model, args.images, args.out, cfg)
        else:
            summary = run_sfm(args.input, args.out, cfg)
    except NerfError as err:
        print(f"error: {err}")
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "unregistered"}, indent=2))
    return 0

"""Photos, a video or an existing COLMAP model -> a posed scene folder (see nerf/sfm/).

Examples:
    python tools/colmap2nerf.py data/my_photos --out data/my_scene --max_image_size 1600
    python tools/colmap2nerf.py clip.mp4 --out data/clip --fps 3
    python tools/colmap2nerf.py --colmap_model data/x/sparse/0 --images data/x/images --out data/x_scene
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.sfm import cli  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `nerf-process` console script (exit status 2 on bad input)."""
    cli(argv)


if __name__ == "__main__":
    main()

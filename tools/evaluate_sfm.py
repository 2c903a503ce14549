"""Run the SfM pipeline on a photo set and compare its poses with a reference transforms.json.

Errors are measured after a similarity alignment (nerf/sfm/evaluate.py): camera-centre error as a
fraction of the reference cameras' spread, rotation error in degrees.

Example:
    nice -n 19 python tools/evaluate_sfm.py ../shared/data/fox/images \
        --reference ../shared/data/fox/transforms.json --out /tmp/fox_sfm --max_image_size 1000 --overwrite
"""

import json
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.atomic import write_text_atomic  # noqa: E402
from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.sfm import SfmConfig, evaluate_scene, run_sfm  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Run SfM (unless --skip_sfm), evaluate the poses, print and save the numbers."""
    run_command(lambda: _evaluate(argv))


def _evaluate(argv) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of photos (or a video)")
    parser.add_option("reference", type=Path, required=True, help="reference transforms.json")
    parser.add_option("out", type=Path, required=True, help="scene folder to write")
    parser.add_option("max_image_size", type=int, default=1000)
    parser.add_switch("skip_sfm", help="evaluate an existing scene in --out")
    parser.add_switch("overwrite", help="replace an existing --out scene")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[evaluate_sfm] %(message)s")
    start, cpu_start = time.perf_counter(), time.process_time()
    if not args.skip_sfm:
        run_sfm(args.images, args.out, SfmConfig(max_image_size=args.max_image_size), overwrite=args.overwrite)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    result = evaluate_scene(args.out / "transforms.json", args.reference)
    numbers = {k: v for k, v in result.items() if not hasattr(v, "shape")}
    numbers.update(wall_seconds=wall, cpu_seconds_all_threads=cpu)
    print(json.dumps(numbers, indent=2))
    write_text_atomic(args.out / "evaluation.json", json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()

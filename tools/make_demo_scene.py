"""Generate the built-in demo scene (a ray-traced temple with exact depth and mesh).

    python tools/make_demo_scene.py --out data/demo --resolution 200
"""

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.datasets.demo import DemoSceneConfig, make_demo_scene  # noqa: E402

_DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "demo"


def main(argv=None) -> None:
    run_command(lambda: _make(argv))


def _make(argv) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_option("out", type=Path, default=_DEFAULT_OUT,
                      help="scene folder to write (default: the repository's data/demo)")
    parser.add_option("resolution", type=int, default=DemoSceneConfig.resolution,
                      help="image width = height in pixels, >= 1 (default: %(default)s)")
    parser.add_switch("overwrite", help="replace an existing folder that is not this exact scene")
    args = parser.parse_args(argv)
    start, start_cpu = time.perf_counter(), time.process_time()
    cfg = DemoSceneConfig(resolution=args.resolution)
    out = make_demo_scene(args.out, cfg, overwrite=args.overwrite)
    n_views = cfg.n_train + cfg.n_val + cfg.n_test
    print(f"{out}: demo scene ready ({n_views} views of {cfg.resolution}x{cfg.resolution}, "
          f"{cfg.supersample}x{cfg.supersample} supersampled) in {time.perf_counter() - start:.1f} s "
          f"({time.process_time() - start_cpu:.1f} s CPU)")


if __name__ == "__main__":
    main()

"""Held-out PSNR with appearance codes, NeRF-W's protocol: fit each test view's code on the left
half of its photo, score the right half. Usage:

    python tools/benchmark_appearance.py RUN [RUN ...] [--steps 100] [--views 0]

For a run trained with --appearance_dim it prints, per test view, the right half's PSNR with the
mean code and with the fitted code; for a run without codes, the right half's PSNR as it renders,
so a run with and one without codes compare on the same pixels.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.errors import ConfigError  # noqa: E402


def main(argv=None) -> None:
    run_command(lambda: _main(argv))


def _main(argv) -> None:
    from nerf.jobs.appearance_bench import FitSettings, benchmark_appearance, format_report

    defaults = FitSettings()
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_option("steps", type=int, default=defaults.steps, help="Adam steps fitting each view's code")
    parser.add_option("rays", type=int, default=defaults.rays, help="left-half rays per step")
    parser.add_option("views", type=int, default=defaults.views, help="test views scored (0 = all)")
    parser.add_option("device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rays < 1 or args.views < 0:
        raise ConfigError("--steps and --rays must be >= 1 and --views >= 0")
    settings = FitSettings(steps=args.steps, rays=args.rays, views=args.views)
    for run in args.runs:
        print(format_report(benchmark_appearance(run, settings, args.device)), flush=True)


if __name__ == "__main__":
    main()

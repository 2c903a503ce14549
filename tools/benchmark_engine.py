"""The engine benchmark: PyTorch reference path vs the default kernels, one process (see --help).

    python tools/benchmark_engine.py --config configs/lego_200.txt     # 200x200 lego views
    python tools/benchmark_engine.py --config configs/fox.txt --json fox_engine.json

Prints training samples/s, rendered rays/s and seconds per test view of each path, and the
default/reference ratios (medians of --repeats rounds on the same warmed-up weights).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import add_json_option, parse_config, write_json_report  # noqa: E402
from nerf.errors import NerfError  # noqa: E402


def add_settings(parser) -> None:
    from nerf.jobs.engine_bench import EngineBenchSettings

    defaults = EngineBenchSettings()
    parser.add_argument("--warmup_steps", type=int, default=defaults.warmup_steps,
                        help="default-path training steps before anything is timed")
    parser.add_argument("--bench_steps", type=int, default=defaults.steps, help="training steps timed per round")
    parser.add_argument("--bench_views", type=int, default=defaults.views, help="test views rendered per round")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="rounds (medians are reported)")
    add_json_option(parser)


def main(argv=None) -> None:
    try:
        from nerf.jobs.engine_bench import EngineBenchSettings, benchmark_engine, format_report

        cfg, ns = parse_config(argv, "Benchmark the reference path against the default kernels.", add_settings)
        settings = EngineBenchSettings(warmup_steps=ns.warmup_steps, steps=ns.bench_steps,
                                       views=ns.bench_views, repeats=ns.repeats)
        result = benchmark_engine(cfg, settings)
        if ns.json:
            write_json_report(ns.json, result)
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_report(result))


if __name__ == "__main__":
    main()

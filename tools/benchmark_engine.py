"""The engine benchmark: PyTorch reference path vs the default kernels, one process (see --help).

    python tools/benchmark_engine.py --config configs/lego_200.txt     # 200x200 lego views
    python tools/benchmark_engine.py --config configs/fox.txt --json fox_engine.json
    python tools/benchmark_engine.py --config configs/lego_200.txt --start_run runs/lego_200   # a trained field

Prints training samples/s, rendered rays/s and seconds per test view of each path, and the
default/reference ratios (medians of --repeats rounds on the same warmed-up weights).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import run_report_tool  # noqa: E402


def add_settings(parser) -> None:
    from nerf.jobs.engine_bench import EngineBenchSettings

    defaults = EngineBenchSettings()
    parser.add_argument("--warmup_steps", type=int, default=defaults.warmup_steps,
                        help="default-path training steps before anything is timed")
    parser.add_argument("--bench_steps", type=int, default=defaults.steps, help="training steps timed per round")
    parser.add_argument("--bench_views", type=int, default=defaults.views, help="test views rendered per round")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="rounds (medians are reported)")
    parser.add_argument("--start_run", default=defaults.run,
                        help="start from this trained run's newest checkpoint (same configuration) instead of warming up")


def main(argv=None) -> None:
    from nerf.jobs.engine_bench import EngineBenchSettings, benchmark_engine, format_report

    def job(cfg, ns):
        settings = EngineBenchSettings(warmup_steps=ns.warmup_steps, steps=ns.bench_steps,
                                       views=ns.bench_views, repeats=ns.repeats, run=ns.start_run)
        return benchmark_engine(cfg, settings)

    run_report_tool(argv, "Benchmark the reference path against the default kernels.", None, job,
                    format_report, extra=add_settings)


if __name__ == "__main__":
    main()

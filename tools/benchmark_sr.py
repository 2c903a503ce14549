"""Benchmark x4 super-resolution of NeRF renders against full-size test photos (see --help).

    python tools/benchmark_sr.py --run runs/lego_200                     # 8 views, 200 -> 800
    python tools/benchmark_sr.py --run runs/lego_200 --views 16 --sr_steps 4000 --json sr.json
    python tools/benchmark_sr.py --run runs/lego_200 --error_fractions 0,0.5,1   # gain vs NeRF error

Methods: bicubic, the run's scene-adapted RRDBNet (trained and saved into <run>/sr/ first when
missing) and pretrained weights (--weights; by default ../shared/weights/realesr-animevideov3.pth
when present). Each is scored on the renders and on the photos box-filtered to the render
size (the upscaler alone, without the NeRF's error).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import run_report_tool  # noqa: E402


def main(argv=None) -> None:
    from nerf.jobs.sr_bench import SRBenchConfig, benchmark_sr, format_report

    run_report_tool(argv, "Benchmark super-resolution of a run's renders.", SRBenchConfig, benchmark_sr, format_report)


if __name__ == "__main__":
    main()

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

from nerf.config import add_json_option, parse_config, write_json_report  # noqa: E402
from nerf.errors import NerfError  # noqa: E402


def main(argv=None) -> None:
    try:
        from nerf.jobs.sr_bench import SRBenchConfig, benchmark_sr, format_report

        cfg, ns = parse_config(argv, "Benchmark super-resolution of a run's renders.", add_json_option,
                               root=SRBenchConfig)
        result = benchmark_sr(cfg)
        if ns.json:
            write_json_report(ns.json, result)
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_report(result))


if __name__ == "__main__":
    main()

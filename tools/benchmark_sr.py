"""Benchmark x4 super-resolution of NeRF renders against full-size test photos (see --help).

    python tools/benchmark_sr.py --run runs/lego_200                     # 8 views, 200 -> 800
    python tools/benchmark_sr.py --run runs/lego_200 --views 16 --sr_steps 4000 --json sr.json

Methods: bicubic, the run's scene-adapted RRDBNet (trained and saved into <run>/sr/ first when
missing) and pretrained weights (--weights; by default ../shared/weights/realesr-animevideov3.pth
when present).
"""

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import parse_config  # noqa: E402
from nerf.errors import NerfError  # noqa: E402


def main(argv=None) -> None:
    def extra(parser):
        parser.add_argument("--json", default="", help="also write the results as JSON to this file")

    try:
        from nerf.sr.evaluate import SRBenchConfig, benchmark_sr, format_report

        cfg, ns = parse_config(argv, "Benchmark super-resolution of a run's renders.", extra,
                               root=SRBenchConfig)
        result = benchmark_sr(cfg)
        if ns.json:
            try:
                Path(ns.json).write_text(json.dumps(result, indent=1))
            except OSError as exc:
                raise NerfError(f"{ns.json}: cannot write the JSON results ({exc.strerror})") from exc
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_report(result))


if __name__ == "__main__":
    main()

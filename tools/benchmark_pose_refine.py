"""The pose-refinement check (see --help): perturb the training poses, train with and without refinement.

    python tools/benchmark_pose_refine.py --config configs/lego_200.txt --max_seconds 150
    python tools/benchmark_pose_refine.py --config configs/lego_200.txt --max_seconds 150 --variants refined

Trains the configuration three times for the same budget (given poses; training poses perturbed
by --degrees about a random axis and --fraction of the scene size; the same perturbed poses with
pose refinement) and prints held-out PSNR, steps and the training poses' mean errors before and
after. Nothing is written to disk.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import run_report_tool  # noqa: E402


def add_settings(parser) -> None:
    from nerf.jobs.pose_bench import PoseBenchSettings

    defaults = PoseBenchSettings()
    parser.add_argument("--degrees", type=float, default=defaults.degrees,
                        help="rotation of each perturbed training pose about its centre, degrees")
    parser.add_argument("--fraction", type=float, default=defaults.fraction,
                        help="displacement of each perturbed training centre, fraction of the scene size")
    parser.add_argument("--perturb_seed", type=int, default=defaults.seed, help="seed of the perturbation")
    parser.add_argument("--variants", default=",".join(defaults.variants),
                        help="trainings to run, in order: any of given, perturbed, refined")


def main(argv=None) -> None:
    from nerf.jobs.pose_bench import PoseBenchSettings, benchmark_pose_refine, format_report

    def job(cfg, ns):
        variants = tuple(v.strip() for v in ns.variants.split(",") if v.strip())
        settings = PoseBenchSettings(degrees=ns.degrees, fraction=ns.fraction, seed=ns.perturb_seed, variants=variants)
        return benchmark_pose_refine(cfg, settings)

    run_report_tool(argv, "Check camera pose refinement on perturbed training poses.", None, job,
                    format_report, extra=add_settings)


if __name__ == "__main__":
    main()

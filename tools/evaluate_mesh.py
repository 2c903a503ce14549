"""Evaluate a run's exported mesh (see --help); demo-scene runs are compared with the ground truth.

    python tools/evaluate_mesh.py --run runs/demo                      # <run>/mesh.ply (extracted if missing)
    python tools/evaluate_mesh.py --run runs/demo --reextract --resolution 384 --json eval.json
    python tools/evaluate_mesh.py --run runs/lego --time_resolution 512
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import run_report_tool  # noqa: E402


def main(argv=None) -> None:
    from nerf.jobs.mesh_bench import MeshEvalConfig, evaluate_run_mesh, format_table

    run_report_tool(argv, "Evaluate the mesh of a run.", MeshEvalConfig, evaluate_run_mesh, format_table)


if __name__ == "__main__":
    main()

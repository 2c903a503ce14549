"""Evaluate a run's exported mesh (see --help); demo-scene runs are compared with the ground truth.

    python tools/evaluate_mesh.py --run runs/demo                      # <run>/mesh.ply (extracted if missing)
    python tools/evaluate_mesh.py --run runs/demo --reextract --resolution 384 --json eval.json
    python tools/evaluate_mesh.py --run runs/lego --time_resolution 512
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import add_json_option, parse_config, write_json_report  # noqa: E402
from nerf.errors import NerfError  # noqa: E402


def main(argv=None) -> None:
    try:
        from nerf.jobs.mesh_bench import MeshEvalConfig, evaluate_run_mesh, format_table

        cfg, ns = parse_config(argv, "Evaluate the mesh of a run.", add_json_option, root=MeshEvalConfig)
        result = evaluate_run_mesh(cfg)
        if ns.json:
            write_json_report(ns.json, result)
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_table(result))


if __name__ == "__main__":
    main()

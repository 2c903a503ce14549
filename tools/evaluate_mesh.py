"""Evaluate a run's exported mesh (see --help); demo-scene runs are compared with the ground truth.

    python tools/evaluate_mesh.py --run runs/demo                      # <run>/mesh.ply (extracted if missing)
    python tools/evaluate_mesh.py --run runs/demo --reextract --resolution 384 --json eval.json
    python tools/evaluate_mesh.py --run runs/lego --time_resolution 512
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
        from nerf.export.mesh_eval import MeshEvalConfig, evaluate_run_mesh, format_table

        cfg, ns = parse_config(argv, "Evaluate the mesh of a run.", extra, root=MeshEvalConfig)
        result = evaluate_run_mesh(cfg)
        if ns.json:
            try:
                Path(ns.json).write_text(json.dumps(result, indent=1))
            except OSError as exc:
                raise NerfError(f"{ns.json}: cannot write the JSON results ({exc.strerror})") from exc
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_table(result))


if __name__ == "__main__":
    main()

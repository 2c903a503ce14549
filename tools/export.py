"""Export a run's geometry: a mesh, a point cloud or a TSDF-fused mesh (see --help).

    python tools/export.py --run runs/demo --kind pointcloud --out runs/demo/points.ply
    python tools/export.py --run runs/demo --kind tsdf --crop_min "-1 -1 -1" --crop_max "1 1 1" --out mesh.glb
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import run_command  # noqa: E402
from nerf.config import parse_config  # noqa: E402


def main(argv=None) -> None:
    run_command(lambda: _export(argv))


def _export(argv) -> None:
    from nerf.jobs.export import ExportJobConfig, export_geometry
    from nerf.jobs.run import load_trained_run

    cfg, _ = parse_config(argv, "Export a run's mesh, point cloud or TSDF mesh.", root=ExportJobConfig)
    run = load_trained_run(cfg.run, cfg.device)
    result = export_geometry(run, cfg, progress=True)
    faces = f", {result.faces} faces" if result.kind != "pointcloud" else ""
    print(f"wrote {result.path}: {result.kind}, {result.vertices} vertices{faces}, {result.seconds:.1f} s")


if __name__ == "__main__":
    main()

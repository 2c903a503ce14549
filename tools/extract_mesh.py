"""Export a coloured mesh from a trained run (see --help).

    python tools/extract_mesh.py --run runs/demo --resolution 256 --out runs/demo/mesh.ply
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import run_command  # noqa: E402
from nerf.config import parse_config  # noqa: E402


def main(argv=None) -> None:
    run_command(lambda: _extract(argv))


def _extract(argv) -> None:
    from nerf.jobs.mesh import MeshJobConfig, export_mesh
    from nerf.jobs.run import load_trained_run

    cfg, _ = parse_config(argv, "Extract a coloured mesh from a run.", root=MeshJobConfig)
    run = load_trained_run(cfg.run, cfg.device)
    path, stats, seconds = export_mesh(run, cfg, progress=True)
    print(f"wrote {path}: {stats.n_vertices} vertices, {stats.n_faces} faces, "
          f"{stats.cavity_voxels} enclosed and {stats.unseen_voxels} unseen voxels filled, "
          f"{stats.components_removed} components removed, watertight={stats.watertight}, "
          f"iso level {stats.iso_level:.3g}, {seconds:.1f} s")


if __name__ == "__main__":
    main()

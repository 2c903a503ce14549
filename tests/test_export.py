"""nerf-export (tools/export.py, nerf/jobs/export.py): point clouds, TSDF meshes, crop boxes."""

import json

import numpy as np
import pytest
import torch
import trimesh
from test_cli import exits_with_2, load_cli
from test_mesh_export import gltf_validator_report

from nerf.jobs.export import density_normals

NORMAL_TOL = 1e-4  # central differences over step 1e-3 on a unit ball: O(step^2) error, ~1e-5
CROP = ("0 -1 -1", "1 1 1")  # the half x >= 0 of the demo's [-1, 1]^3 box, normalised frame


@pytest.fixture(scope="module")
def export_cli():
    return load_cli("tools/export.py").main


def original_to_normalised(run_dir, points: np.ndarray) -> np.ndarray:
    data = json.loads((run_dir / "dataparser_transforms.json").read_text())
    top = np.asarray(data["transform"])
    return data["scale"] * (points @ top[:, :3].T + top[:, 3])


def ply_header(path) -> str:
    return path.read_bytes().split(b"end_header")[0].decode("ascii")


def test_density_normals_of_a_ball_point_outwards():
    def ball(points):  # dense inside the unit ball, fading over a shell
        return torch.sigmoid(20.0 * (1.0 - points.norm(dim=-1)))

    gen = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(500, 3, generator=gen, dtype=torch.float64), dim=-1)
    points = dirs * 1.0  # on the surface
    seen_from = -dirs  # cameras outside looking in
    normals = density_normals(ball, points, seen_from, step=1e-3)
    torch.testing.assert_close(normals, dirs, atol=NORMAL_TOL, rtol=0)
    # flat density: no gradient, the normal faces the viewer
    flat = density_normals(lambda p: torch.ones(len(p), dtype=p.dtype), points, seen_from, step=1e-3)
    torch.testing.assert_close(flat, dirs)


def test_pointcloud_export_in_the_original_frame_and_the_crop_box(export_cli, tiny_run, tmp_path, capsys):
    out = tmp_path / "points.ply"
    export_cli(["--run", str(tiny_run), "--kind", "pointcloud", "--views", "4", "--crop_min", CROP[0],
                "--crop_max", CROP[1], "--out", str(out)])
    assert "pointcloud" in capsys.readouterr().out
    header = ply_header(out)
    assert all(f"property float {n}" in header for n in ("nx", "ny", "nz"))
    assert all(f"property uchar {c}" in header for c in ("red", "green", "blue"))
    cloud = trimesh.load(out, process=False)
    normalised = original_to_normalised(tiny_run, np.asarray(cloud.vertices, dtype=np.float64))
    lo, hi = (np.array([float(v) for v in c.split()]) for c in CROP)
    assert len(normalised) > 100
    assert (normalised >= lo - 1e-5).all() and (normalised <= hi + 1e-5).all()
    assert normalised[:, 0].max() > 0.2  # the box holds points, not only its boundary
    raw = np.frombuffer(out.read_bytes()[len(header) + len("end_header\n"):],
                        dtype=[("p", "<f4", 3), ("n", "<f4", 3), ("c", "u1", 3)])
    np.testing.assert_allclose(np.linalg.norm(raw["n"], axis=1), 1.0, atol=1e-5)


def test_tsdf_export_as_a_valid_glb(export_cli, tiny_run, tmp_path):
    out = tmp_path / "tsdf.glb"
    export_cli(["--run", str(tiny_run), "--kind", "tsdf", "--views", "6", "--tsdf_resolution", "48",
                "--crop_min", CROP[0], "--crop_max", CROP[1], "--out", str(out)])
    report = gltf_validator_report(out)
    assert report["issues"]["numErrors"] == 0
    mesh = trimesh.load(out, force="mesh", process=False)
    assert len(mesh.faces) > 0
    normalised = original_to_normalised(tiny_run, np.asarray(mesh.vertices, dtype=np.float64))
    assert (normalised[:, 0] >= -1e-5).all()


@pytest.mark.parametrize("argv, message", [
    (["--kind", "voxels"], "kind = 'voxels': expected one of mesh, pointcloud, tsdf"),
    (["--kind", "pointcloud", "--out", "cloud.xyz"], "expected a .ply, .obj, .glb file"),
    (["--kind", "pointcloud", "--crop_min", "5 5 5", "--crop_max", "6 6 6"], "does not overlap the scene box"),
    (["--kind", "pointcloud", "--stride", "0"], "stride = 0: must be >= 1"),
])
def test_export_refuses_bad_options(export_cli, tiny_run, tmp_path, capsys, argv, message):
    err = exits_with_2(export_cli, ["--run", str(tiny_run), *argv], capsys)
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tiny_run / "pointcloud.ply").exists()  # nothing written

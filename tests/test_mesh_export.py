"""Tests of mesh extraction and mesh files (nerf/export/mesh.py, nerf/export/mesh_io.py).

Ground truth is analytic: spheres and boxes of known size, a known similarity transform.
"""

import json
import math
import os
import re
import struct

import numpy as np
import pytest
import torch
import trimesh

from nerf.errors import ConfigError, ExportError
from nerf.export.mesh import (
    vertex_colors,
    MeshConfig,
    auto_iso_level,
    cone_directions,
    density_lattice,
    extract_mesh,
    lattice_bytes,
    to_original_frame,
)
from nerf.export.gltf import srgb_to_linear
from nerf.export.mesh_io import load_mesh, save_mesh, save_point_cloud_ply

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RES = 48  # lattice points per axis: fast, yet ~5 voxels across the smallest test shape
VOXEL = 2.0 / (RES - 1)
SIGMA_IN = 200.0  # density inside the shapes; well above auto_iso_level(VOXEL) ~ 16
EDGE = 0.2 * VOXEL  # width of the smooth density falloff at a shape's surface
RADIUS = 0.5
NORMAL_FRACTION = 0.99  # faces whose normal must point away from the centre
COLOR_TOL = 1  # uint8 steps (quantisation of colours in [0, 1])
NORMAL_ERROR_DEG = 20.0  # vertex normals of a marching-cubes sphere this coarse err up to ~18 deg
POS_TOL = 1e-5  # float32 vertex positions after a round trip through a file or a transform


def sphere_density(center=(0.0, 0.0, 0.0), radius=RADIUS):
    c = torch.tensor(center)

    def density(points):
        return SIGMA_IN * torch.sigmoid((radius - (points - c).norm(dim=-1)) / EDGE)

    return density


def box_density(half):
    def density(points):
        return SIGMA_IN * torch.sigmoid((half - points.abs().max(dim=-1).values) / EDGE)

    return density


def ball_volume(radius):
    return 4.0 / 3.0 * math.pi * radius**3


def constant_red(points, directions):
    return torch.tensor([1.0, 0.0, 0.0]).expand(points.shape[0], 3)


@pytest.fixture(scope="module")
def red_sphere():
    return extract_mesh(sphere_density(), AABB, MeshConfig(resolution=RES), color_fn=constant_red)


def test_auto_iso_level_is_half_opacity_per_voxel():
    for voxel in (0.01, 0.1, 2.0):
        alpha = 1.0 - math.exp(-auto_iso_level(voxel) * voxel)
        assert alpha == pytest.approx(0.5, abs=1e-12)


def test_sphere_vertices_on_surface(red_sphere):
    mesh, stats = red_sphere
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - RADIUS).max() < VOXEL
    assert stats.watertight and mesh.is_watertight
    assert stats.n_vertices == len(mesh.vertices) and stats.n_faces == len(mesh.faces)
    assert stats.iso_level == pytest.approx(math.log(2.0) / VOXEL)
    assert ball_volume(RADIUS - VOXEL) < mesh.volume < ball_volume(RADIUS + VOXEL)


def test_sphere_normals_point_outward(red_sphere):
    mesh, _ = red_sphere
    outward = np.sum(mesh.face_normals * mesh.triangles_center, axis=1) > 0
    assert outward.mean() > NORMAL_FRACTION
    assert mesh.volume > 0  # consistent outward winding gives a positive signed volume


def test_constant_colour_gives_red_vertices(red_sphere):
    mesh, _ = red_sphere
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int)
    assert np.abs(colors - [255, 0, 0]).max() <= COLOR_TOL


def test_colour_queried_outside_surface_looking_inward():
    seen = {}

    def color_fn(points, directions):
        seen["points"], seen["dirs"] = points.clone(), directions.clone()
        outside = (points.norm(dim=-1) > RADIUS).float()
        return torch.stack([outside, 1.0 - outside, torch.zeros_like(outside)], dim=-1)

    cfg = MeshConfig(resolution=RES, color_directions=5, color_cone_deg=20.0)
    mesh, _ = extract_mesh(sphere_density(), AABB, cfg, color_fn=color_fn)
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int)
    assert np.abs(colors - [255, 0, 0]).max() <= COLOR_TOL  # every query was outside the sphere
    radial = seen["points"] / seen["points"].norm(dim=-1, keepdim=True)
    cos_inward = (-radial * seen["dirs"]).sum(-1)
    assert torch.allclose(seen["dirs"].norm(dim=-1), torch.ones(len(radial)), atol=1e-5)
    assert cos_inward.min() > math.cos(math.radians(20.0 + NORMAL_ERROR_DEG))
    assert len(seen["dirs"]) % 5 == 0


def test_cone_directions_within_cone():
    g = torch.Generator().manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=-1)
    axes[0] = torch.tensor([1.0, 0.0, 0.0])  # the helper-axis switch
    dirs = cone_directions(axes, 7, math.radians(25.0))
    assert dirs.shape == (50, 7, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(50, 7))
    cos = (dirs * axes[:, None]).sum(-1)
    assert cos.min() >= math.cos(math.radians(25.0)) - 1e-6
    assert cos.max() < 1.0 - 1e-4  # spread, not all on the axis


def test_box_faces_within_one_voxel():
    half = 0.4
    mesh, stats = extract_mesh(box_density(half), AABB, MeshConfig(resolution=RES))
    assert stats.watertight
    np.testing.assert_allclose(mesh.bounds, [[-half] * 3, [half] * 3], atol=VOXEL)
    assert np.abs(np.abs(mesh.vertices).max(axis=1) - half).max() < VOXEL  # every vertex on a face
    outward = np.sum(mesh.face_normals * mesh.triangles_center, axis=1) > 0
    assert outward.mean() > NORMAL_FRACTION


def random_similarity(scale=2.0):
    rot, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    rot *= np.sign(np.linalg.det(rot))  # a proper rotation
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = scale * rot, [0.3, -1.2, 2.5]
    return t


def test_transform_maps_back_to_original_frame():
    t = random_similarity(scale=2.0)
    center_n = np.array([0.1, -0.2, 0.15])  # inside the aabb with the sphere around it
    original_center = np.linalg.solve(t[:3, :3], center_n - t[:3, 3])
    mesh, stats = extract_mesh(
        sphere_density(tuple(center_n.astype(np.float32)), RADIUS / 2), AABB, MeshConfig(resolution=RES),
        color_fn=constant_red, transform=torch.tensor(t, dtype=torch.float32),
    )
    radii = np.linalg.norm(mesh.vertices - original_center, axis=1)
    assert np.abs(radii - RADIUS / 2 / 2.0).max() < VOXEL / 2.0  # lengths shrink by the scale
    assert mesh.volume > 0 and stats.watertight
    assert np.abs(np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int) - [255, 0, 0]).max() <= COLOR_TOL


def test_to_original_frame_known_point():
    t = random_similarity(scale=2.0)
    p = np.array([[0.7, -0.2, 1.3], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    mesh = trimesh.Trimesh((p @ t[:3, :3].T + t[:3, 3]), [[0, 1, 2]], process=False)
    back = to_original_frame(mesh, torch.tensor(t))
    np.testing.assert_allclose(back.vertices, p, atol=1e-9)


def test_to_original_frame_reflection_keeps_outward_faces():
    t = np.diag([-1.0, 1.0, 1.0, 1.0])
    sphere = trimesh.creation.icosphere(2)
    back = to_original_frame(sphere, torch.tensor(t))
    assert back.volume > 0


def test_occupied_fn_skips_empty_points():
    evaluated = []

    def density(points):
        evaluated.append(points.clone())
        return sphere_density()(points)

    occupied_radius = 0.7
    grid = density_lattice(density, AABB, RES, chunk=5000,
                           occupied_fn=lambda p: p.norm(dim=-1) < occupied_radius)
    pts = torch.cat(evaluated)
    assert pts.norm(dim=-1).max() < occupied_radius
    full = density_lattice(sphere_density(), AABB, RES, chunk=5000)
    axis = torch.linspace(-1.0, 1.0, RES)
    lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    inside = lattice.norm(dim=-1) < occupied_radius
    assert len(pts) == int(inside.sum())
    torch.testing.assert_close(grid[inside], full[inside])
    assert bool((grid[~inside] == 0).all())


def test_lattice_index_order_is_xyz():
    grid = density_lattice(lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2], AABB, 5)
    axis = torch.linspace(-1.0, 1.0, 5)
    assert float(grid[4, 0, 0]) == pytest.approx(float(axis[4] + 10 * axis[0] + 100 * axis[0]))
    assert float(grid[1, 2, 3]) == pytest.approx(float(axis[1] + 10 * axis[2] + 100 * axis[3]))


def test_empty_isosurface_names_level_and_range():
    with pytest.raises(ExportError) as err:
        extract_mesh(lambda p: torch.full((len(p),), 3.0), AABB, MeshConfig(resolution=8, iso_level=5.0))
    msg = str(err.value)
    assert "5" in msg and "[3, 3]" in msg
    with pytest.raises(ExportError, match="every lattice point"):
        extract_mesh(lambda p: torch.full((len(p),), 9.0), AABB, MeshConfig(resolution=8, iso_level=5.0))


def test_resolution_too_large_suggests_fitting_one():
    budget = 64 << 20
    with pytest.raises(ExportError) as err:
        density_lattice(sphere_density(), AABB, 1024, max_lattice_bytes=budget)
    suggested = int(re.search(r"use resolution (\d+)", str(err.value)).group(1))
    # memory model of the docstring: float32 lattice + float32 copy padded by one on each side
    assert 4 * (suggested**3 + (suggested + 2) ** 3) <= budget
    assert 4 * ((suggested + 1) ** 3 + (suggested + 3) ** 3) > budget
    assert lattice_bytes(suggested) <= budget


def test_component_removal_drops_floater():
    big, small = sphere_density(radius=RADIUS), sphere_density((0.75, 0.75, 0.75), 0.12)

    def density(points):
        return torch.maximum(big(points), small(points))

    mesh, stats = extract_mesh(density, AABB, MeshConfig(resolution=RES))
    assert stats.n_components == 2 and stats.components_removed == 0
    for cfg in (MeshConfig(resolution=RES, min_component_faces=500),
                MeshConfig(resolution=RES, keep_largest=1)):
        kept, stats = extract_mesh(density, AABB, cfg)
        assert stats.n_components == 2 and stats.components_removed == 1
        assert np.abs(np.linalg.norm(kept.vertices, axis=1) - RADIUS).max() < VOXEL
        assert kept.is_watertight
    with pytest.raises(ExportError, match="min_component_faces"):
        extract_mesh(density, AABB, MeshConfig(resolution=RES, min_component_faces=10**7))


def test_crop_box():
    cfg = MeshConfig(resolution=RES, crop_min=(0.0, -1.0, -1.0), crop_max=(2.0, 1.0, 1.0))
    mesh, stats = extract_mesh(sphere_density(), AABB, cfg)
    assert mesh.vertices[:, 0].min() >= 0.0  # clipped to the crop box
    assert stats.watertight  # the cut is capped
    assert ball_volume(RADIUS - VOXEL) / 2 < mesh.volume < ball_volume(RADIUS + VOXEL) / 2
    with pytest.raises(ExportError, match="does not overlap"):
        outside = MeshConfig(resolution=RES, crop_min=(2, 2, 2), crop_max=(3, 3, 3))
        extract_mesh(sphere_density(), AABB, outside)


def test_cavity_inside_a_solid_is_filled():
    """A shell (matter between radius 0.25 and RADIUS, empty inside) meshes as one outer surface;
    without filling, marching cubes also returns the inner wall of the hidden pocket."""
    outer, inner = sphere_density(radius=RADIUS), sphere_density(radius=0.25)

    def shell(points):
        return outer(points) * (1.0 - inner(points) / SIGMA_IN)

    filled, stats = extract_mesh(shell, AABB, MeshConfig(resolution=RES))
    assert stats.n_components == 1 and stats.cavity_voxels > 0
    assert np.abs(np.linalg.norm(filled.vertices, axis=1) - RADIUS).max() < VOXEL
    assert ball_volume(RADIUS - VOXEL) < filled.volume < ball_volume(RADIUS + VOXEL)
    hollow, stats = extract_mesh(shell, AABB, MeshConfig(resolution=RES, fill_cavities=False))
    assert stats.n_components == 2 and stats.cavity_voxels == 0
    assert np.linalg.norm(hollow.vertices, axis=1).min() < 0.25 + VOXEL


def test_open_pocket_is_not_filled():
    """A pocket with a channel to the outside is visible surface and stays."""
    outer, inner = sphere_density(radius=RADIUS), sphere_density(radius=0.25)

    def cup(points):  # the shell with a vertical hole of radius 0.1 through its top
        hole = (points[:, :2].norm(dim=-1) < 0.1) & (points[:, 2] > 0)
        return torch.where(hole, 0.0, outer(points) * (1.0 - inner(points) / SIGMA_IN))

    mesh, stats = extract_mesh(cup, AABB, MeshConfig(resolution=RES))
    assert stats.cavity_voxels == 0
    assert np.linalg.norm(mesh.vertices, axis=1).min() < 0.25 + VOXEL


def test_crop_to_occupied_box():
    from nerf.jobs.mesh import crop_to_occupied

    cfg = MeshConfig(resolution=RES)
    occupied = torch.tensor([[-0.5, -0.25, 0.0], [0.5, 0.25, 0.5]])
    cropped = crop_to_occupied(cfg, AABB, occupied)
    margin = 2.0 * (occupied[1] - occupied[0]) / (RES - 1)
    assert np.allclose(cropped.crop_min, (occupied[0] - margin).tolist(), atol=1e-6)
    assert np.allclose(cropped.crop_max, (occupied[1] + margin).tolist(), atol=1e-6)
    explicit = MeshConfig(resolution=RES, crop_min=(0.0, -1.0, -1.0), crop_max=(1.0, 1.0, 1.0))
    both = crop_to_occupied(explicit, AABB, occupied)
    assert both.crop_min[0] == 0.0 and both.crop_max[0] == pytest.approx(0.5 + float(margin[0]))
    disjoint = torch.tensor([[-0.9, -0.9, -0.9], [-0.5, -0.5, -0.5]])
    assert crop_to_occupied(explicit, AABB, disjoint) == explicit
    # the sphere inside the occupied box meshes the same, on a finer lattice
    tight = crop_to_occupied(cfg, AABB, torch.tensor([[-0.55] * 3, [0.55] * 3]))
    mesh, _ = extract_mesh(sphere_density(), AABB, tight)
    fine_voxel = (tight.crop_max[0] - tight.crop_min[0]) / (RES - 1)
    assert fine_voxel < VOXEL / 1.5
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - RADIUS).max() < fine_voxel


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        MeshConfig(iso_level="high")
    with pytest.raises(ConfigError):
        MeshConfig(crop_min=(0, 0, 0))
    with pytest.raises(ConfigError):
        MeshConfig(resolution=2)
    assert MeshConfig(iso_level="20").iso_level == 20.0  # numbers arrive as text from config files


def test_decimate_and_smooth():
    pytest.importorskip("open3d")
    budget = 600
    cfg = MeshConfig(resolution=RES, decimate_faces=budget, smooth_iterations=10)
    mesh, stats = extract_mesh(sphere_density(), AABB, cfg, color_fn=constant_red)
    assert stats.n_faces <= budget
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - RADIUS).max() < 2 * VOXEL
    assert len(mesh.visual.vertex_colors) == len(mesh.vertices)


# --- files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colored_mesh():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rgb = np.random.default_rng(0).integers(0, 256, (len(mesh.vertices), 3), dtype=np.uint8)
    mesh.visual.vertex_colors = rgb
    return mesh, rgb


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_file_round_trip_trimesh(tmp_path, colored_mesh, suffix):
    mesh, rgb = colored_mesh
    path = save_mesh(mesh, tmp_path / f"mesh{suffix}")
    back = load_mesh(path)
    assert back.vertices.shape == mesh.vertices.shape and back.faces.shape == mesh.faces.shape
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=POS_TOL)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert np.abs(np.asarray(back.visual.vertex_colors)[:, :3].astype(int) - rgb).max() <= COLOR_TOL
    assert [p.name for p in tmp_path.iterdir()] == [f"mesh{suffix}"]  # no temporary left behind


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_file_round_trip_open3d(tmp_path, colored_mesh, suffix):
    o3d = pytest.importorskip("open3d")
    from scipy.spatial import cKDTree

    mesh, rgb = colored_mesh
    path = save_mesh(mesh, tmp_path / f"mesh{suffix}")
    back = o3d.io.read_triangle_mesh(str(path))
    verts = np.asarray(back.vertices)
    assert verts.shape == mesh.vertices.shape and np.asarray(back.triangles).shape == mesh.faces.shape
    assert back.has_vertex_colors()
    dist, idx = cKDTree(mesh.vertices).query(verts)  # Open3D may reorder vertices
    assert dist.max() < POS_TOL
    expected = srgb_to_linear(rgb[idx]) if suffix == ".glb" else rgb[idx] / 255.0  # glTF colours are linear
    assert np.abs(np.asarray(back.vertex_colors) - expected).max() * 255.0 <= COLOR_TOL


def test_ply_header_uses_uchar_colour_names(tmp_path, colored_mesh):
    path = save_mesh(colored_mesh[0], tmp_path / "mesh.ply")
    header = path.read_bytes().split(b"end_header")[0].decode("ascii")
    assert "format binary_little_endian 1.0" in header
    for name in ("red", "green", "blue"):
        assert f"property uchar {name}" in header


def test_obj_vertex_colour_lines(tmp_path, colored_mesh):
    mesh, rgb = colored_mesh
    lines = [l for l in (save_mesh(mesh, tmp_path / "m.obj")).read_text().splitlines() if l.startswith("v ")]
    first = [float(v) for v in lines[0].split()[1:]]
    assert len(first) == 6
    np.testing.assert_allclose(first[3:], rgb[0] / 255.0, atol=1e-6)


def read_glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack("<4sII", data[:12])
    chunk_len, chunk_type = struct.unpack("<I4s", data[12:20])
    assert magic == b"glTF" and version == 2 and length == len(data) and chunk_type == b"JSON"
    bin_len, bin_type = struct.unpack("<I4s", data[20 + chunk_len : 28 + chunk_len])
    assert bin_type == b"BIN\0" and 28 + chunk_len + bin_len == len(data)
    return json.loads(data[20 : 20 + chunk_len]), data[28 + chunk_len :]


def glb_attribute(gltf: dict, binary: bytes, name: str) -> np.ndarray:
    accessor = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"][name]]
    view = gltf["bufferViews"][accessor["bufferView"]]
    assert accessor["componentType"] == 5126 and accessor["type"] == "VEC3"
    return np.frombuffer(binary, "<f4", accessor["count"] * 3, view["byteOffset"]).reshape(-1, 3)


def test_glb_linear_colours_unlit_material_and_normals(tmp_path, colored_mesh):
    mesh, rgb = colored_mesh
    gltf, binary = read_glb(save_mesh(mesh, tmp_path / "mesh.glb").read_bytes())
    primitive = gltf["meshes"][0]["primitives"][0]
    assert {"POSITION", "NORMAL", "COLOR_0"} <= set(primitive["attributes"])
    assert "KHR_materials_unlit" in gltf["extensionsUsed"]
    material = gltf["materials"][primitive["material"]]
    assert "KHR_materials_unlit" in material["extensions"]
    assert material["pbrMetallicRoughness"]["metallicFactor"] == 0.0
    # colours: the PLY's sRGB bytes decoded with the sRGB curve (0.5 in sRGB is 0.214 linear)
    linear = glb_attribute(gltf, binary, "COLOR_0")
    c = rgb / 255.0
    expected = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(linear, expected, atol=1e-6)
    ply = trimesh.load(save_mesh(mesh, tmp_path / "mesh.ply"), process=False)
    np.testing.assert_array_equal(np.asarray(ply.visual.vertex_colors)[:, :3], rgb)
    normals = glb_attribute(gltf, binary, "NORMAL")
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    outward = np.einsum("ij,ij->i", normals, mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True))
    assert outward.min() > 0.95  # an icosphere's smooth normals point away from its centre


def test_ply_and_obj_carry_normals(tmp_path, colored_mesh):
    mesh, _ = colored_mesh
    header = save_mesh(mesh, tmp_path / "m.ply").read_bytes().split(b"end_header")[0].decode("ascii")
    assert all(f"property float {n}" in header for n in ("nx", "ny", "nz"))
    text = save_mesh(mesh, tmp_path / "m.obj").read_text().splitlines()
    normals = np.array([[float(v) for v in line.split()[1:]] for line in text if line.startswith("vn ")])
    assert len(normals) == len(mesh.vertices)
    np.testing.assert_allclose(normals, mesh.vertex_normals, atol=1e-5)
    face = next(line for line in text if line.startswith("f "))
    assert face.split()[1].split("//")[0] == face.split()[1].split("//")[1]


def gltf_validator_report(path):
    """The Khronos glTF validator's report of `path` (npm package gltf-validator, run by node)."""
    import shutil
    import subprocess

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed (the Khronos glTF validator runs on node; .ci/run installs it)")
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
    script = ("const v=require('gltf-validator');const fs=require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])))"
              ".then(r=>console.log(JSON.stringify(r)),e=>{console.error(e);process.exit(3)});")
    run = subprocess.run(["node", "-e", script, str(path)], capture_output=True, text=True,
                         env={**os.environ, "NODE_PATH": root})
    if "Cannot find module 'gltf-validator'" in run.stderr:
        pytest.skip("npm package gltf-validator not installed (npm install -g gltf-validator; .ci/run does)")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("points", [False, True])
def test_glb_passes_the_khronos_validator(tmp_path, colored_mesh, points):
    mesh, rgb = colored_mesh
    if points:
        path = save_point_cloud_ply(tmp_path / "cloud.glb", mesh.vertices, rgb, mesh.vertex_normals)
    else:
        path = save_mesh(mesh, tmp_path / "mesh.glb")
    report = gltf_validator_report(path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    info = report["info"]
    assert "KHR_materials_unlit" in info["extensionsUsed"] and info["materialCount"] == 1


def test_save_mesh_errors(tmp_path, colored_mesh):
    with pytest.raises(ExportError, match="unknown mesh format"):
        save_mesh(colored_mesh[0], tmp_path / "mesh.stl")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="is a file"):
        save_mesh(colored_mesh[0], blocker / "mesh.ply")
    with pytest.raises(ExportError, match="not found"):
        load_mesh(tmp_path / "missing.ply")


def test_vertex_colors_survive_degenerate_vertices():
    # a proper triangle plus a zero-area triangle whose vertices have no defined normal
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [2, 2, 2], [2, 2, 2]], dtype=float)
    mesh = trimesh.Trimesh(verts, [[0, 1, 2], [3, 4, 5]], process=False)

    def green(points, directions):
        assert bool(torch.isfinite(directions).all())
        return torch.tensor([0.0, 1.0, 0.0]).expand(len(points), 3)

    colors = vertex_colors(mesh, green, MeshConfig(), voxel_size=0.1)
    assert (colors == np.array([0, 255, 0], dtype=np.uint8)).all()


def foggy_cup(hole_radius: float):
    """The shell of test_cavity_inside_a_solid_is_filled with a vertical hole through its top and
    a faint fog (density 1, far below the level) in its pocket, as trained fields leave there."""
    outer, inner = sphere_density(radius=RADIUS), sphere_density(radius=0.25)

    def density(points):
        hole = (points[:, :2].norm(dim=-1) < hole_radius) & (points[:, 2] > 0)
        shell = outer(points) * (1.0 - inner(points) / SIGMA_IN)
        return torch.where(hole, 0.0, torch.maximum(shell, torch.where(inner(points) > 0, 1.0, 0.0)))

    return density


SEAL = 3.0 / (RES - 1)  # a ball of 3 voxels: it cannot pass the 0.1-radius hole (2.35 voxels)


def has_inner_wall(mesh, tolerance=VOXEL):
    """Whether the cup's pocket (radius 0.25) is still meshed below its hole."""
    lower = mesh.vertices[mesh.vertices[:, 2] < -0.1]
    return np.linalg.norm(lower, axis=1).min() < 0.25 + tolerance


def never_seen(points, margin):
    return torch.zeros(len(points), dtype=torch.bool)


def always_seen(points, margin):
    return torch.ones(len(points), dtype=torch.bool)


def test_sealed_unseen_pocket_is_filled():
    """The pocket behind a narrow hole (a porous shell) is filled when no camera saw it empty:
    the lower half of its wall disappears. Seen empty, or reachable by the ball, it stays."""
    cfg = MeshConfig(resolution=RES, seal_radius=SEAL)
    mesh, stats = extract_mesh(foggy_cup(0.1), AABB, cfg, seen_empty_fn=never_seen)
    lower = mesh.vertices[mesh.vertices[:, 2] < -0.1]
    assert stats.cavity_voxels == 0 and stats.unseen_voxels > 0
    assert np.linalg.norm(lower, axis=1).min() > RADIUS - VOXEL  # only the outer wall down there

    seen, stats = extract_mesh(foggy_cup(0.1), AABB, cfg, seen_empty_fn=always_seen)
    assert stats.unseen_voxels == 0 and has_inner_wall(seen)
    wide, stats = extract_mesh(foggy_cup(0.2), AABB, cfg, seen_empty_fn=never_seen)  # the ball gets in
    assert stats.unseen_voxels == 0 and has_inner_wall(wide)
    off, stats = extract_mesh(foggy_cup(0.1), AABB, MeshConfig(resolution=RES, fill_unseen=False),
                              seen_empty_fn=never_seen)
    assert stats.unseen_voxels == 0 and has_inner_wall(off)


def test_zero_density_is_never_filled():
    """Without the fog the pocket holds density 0 (free by definition) and stays open; only the
    wall's own falloff layer (0 < density <= level) may be filled, moving it by under a voxel."""
    outer, inner = sphere_density(radius=RADIUS), sphere_density(radius=0.25)

    def cup(points):  # exactly 0 in the pocket (the product above leaves rounding residue)
        hole = (points[:, :2].norm(dim=-1) < 0.1) & (points[:, 2] > 0)
        pocket = points.norm(dim=-1) < 0.25
        return torch.where(hole | pocket, 0.0, outer(points) * (1.0 - inner(points) / SIGMA_IN))

    mesh, _ = extract_mesh(cup, AABB, MeshConfig(resolution=RES, seal_radius=SEAL), seen_empty_fn=never_seen)
    assert has_inner_wall(mesh, tolerance=2 * VOXEL)

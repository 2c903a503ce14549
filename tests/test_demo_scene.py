"""Tests of the built-in demo scene (nerf/datasets/demo*.py and tools/make_demo_scene.py).

Ground truth comes from scene.json's analytic primitives and light, and from rays rebuilt here
from the Blender-format json (OpenGL camera axes), independently of the generator's own code.
"""

import importlib.util
import json
import os
from dataclasses import asdict
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh

from nerf.datasets.demo import (
    DemoSceneConfig,
    albedo_at,
    demo_cameras,
    ensure_demo_scene,
    look_at_opengl,
    make_demo_scene,
    render_demo_view,
)
from nerf.errors import ConfigError, SceneError

SMALL = DemoSceneConfig(resolution=32, n_train=3, n_val=1, n_test=2)
SPLITS = ("train", "val", "test")

DEPTH_ON_MESH_TOL = 1e-3  # x scene size: float32 depth (1e-6) + tessellation (< 2e-4 x size)
ON_SURFACE_TOL = 1e-5  # world units: float32 depth at t ~ 4 rounds by ~5e-7
PLY_VERTEX_TOL = 1e-7  # world units: vertices lie on the surfaces, stored as float32 in PLY
TESSELLATION_TOL = 2e-4  # x scene size: largest face-centroid distance from the true surface
VOLUME_RTOL = 1e-3  # icosphere (subdivision 5) and 256-gon volumes are 1e-4 to 3e-4 short
AREA_RTOL = 1e-3  # same polygonal approximations, for the area
COLOR_TOL = 1e-6  # float64 shading of one point seen from two views, stored as float32
SMOOTH_DEPTH_SPREAD = 0.4  # world units: a pixel spans ~0.11 at t = 4; gaps jump by >= 0.5
SPECULAR_MIN_CHANGE = 0.2  # a highlight of weight 0.6 appears in one view only


def _scene_size(meta: dict) -> float:
    aabb = np.array(meta["aabb"])
    return float((aabb[1] - aabb[0]).max())


def _sdf(prim: dict, x: np.ndarray) -> np.ndarray:  # x [P, 3] -> [P], negative inside
    """Signed distance to one primitive, written from its scene.json description."""
    if prim["type"] == "sphere":
        return np.linalg.norm(x - prim["center"], axis=1) - prim["radius"]
    if prim["type"] == "box":
        lo, hi = np.array(prim["min"]), np.array(prim["max"])
        excess = np.abs(x - (lo + hi) / 2) - (hi - lo) / 2
    else:
        assert prim["axis"] == "z"
        mid, half = (prim["z_min"] + prim["z_max"]) / 2, (prim["z_max"] - prim["z_min"]) / 2
        radial = np.linalg.norm(x[:, :2] - prim["center_xy"], axis=1)
        excess = np.stack([radial - prim["radius"], np.abs(x[:, 2] - mid) - half], 1)
    return np.minimum(excess.max(1), 0) + np.linalg.norm(np.maximum(excess, 0), axis=1)


def _scene_sdf(meta: dict, x: np.ndarray) -> np.ndarray:  # [P, 3] -> [P]
    return np.min([_sdf(p, x) for p in meta["primitives"]], axis=0)


def _rays_from_json(transforms: dict, frame: dict, width: int, height: int):
    """Origins [3] and unit directions [H, W, 3] through pixel centres, OpenGL camera axes."""
    focal = 0.5 * width / np.tan(0.5 * transforms["camera_angle_x"])
    c2w = np.array(frame["transform_matrix"])
    i, j = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5, indexing="xy")
    cam = np.stack([(i - width / 2) / focal, -(j - height / 2) / focal, -np.ones_like(i)], -1)
    dirs = cam @ c2w[:3, :3].T
    return c2w[:3, 3], dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)


def _frames(root: Path):
    """(transforms, frame, rgba uint8 [H, W, 4], depth [H, W]) for every frame of every split."""
    for split in SPLITS:
        transforms = json.loads((root / f"transforms_{split}.json").read_text())
        for frame in transforms["frames"]:
            rgba = iio.imread(root / (frame["file_path"] + ".png"))
            yield transforms, frame, rgba, np.load(root / frame["depth_path"])


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return make_demo_scene(tmp_path_factory.mktemp("demo") / "demo", SMALL)


@pytest.fixture(scope="module")
def meta(scene) -> dict:
    return json.loads((scene / "scene.json").read_text())


def test_generation_is_deterministic(scene, tmp_path):
    again = make_demo_scene(tmp_path / "again", SMALL)
    files = sorted(p.relative_to(scene) for p in scene.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (scene / name).read_bytes() == (again / name).read_bytes(), name


def test_transforms_fields_and_counts(scene, meta):
    counts = {"train": SMALL.n_train, "val": SMALL.n_val, "test": SMALL.n_test}
    for split in SPLITS:
        transforms = json.loads((scene / f"transforms_{split}.json").read_text())
        assert transforms["camera_angle_x"] == SMALL.camera_angle_x
        assert len(transforms["frames"]) == counts[split]
        for k, frame in enumerate(transforms["frames"]):
            assert frame["file_path"] == f"./{split}/r_{k}"
            assert frame["depth_path"] == f"./{split}/r_{k}_depth.npy"
            c2w = np.array(frame["transform_matrix"])
            assert c2w.shape == (4, 4)
            np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
            np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-12)
            # OpenGL: the camera looks along -z, at the origin, from the configured radius
            np.testing.assert_allclose(np.linalg.norm(c2w[:3, 3]), SMALL.camera_radius)
            np.testing.assert_allclose(-c2w[:3, 2], -c2w[:3, 3] / SMALL.camera_radius, atol=1e-12)
            elevation = np.degrees(np.arcsin(c2w[2, 3] / SMALL.camera_radius))
            assert SMALL.elevation_min <= elevation <= SMALL.elevation_max
    assert meta["config"] == json.loads(json.dumps(asdict(SMALL)))
    assert len(meta["primitives"]) >= 7
    for transforms, frame, rgba, depth in _frames(scene):
        assert rgba.dtype == np.uint8 and rgba.shape == (32, 32, 4)
        assert depth.dtype == np.float32 and depth.shape == (32, 32)


def test_depth_points_lie_on_the_ground_truth_mesh(scene, meta):
    o3d = pytest.importorskip("open3d", reason="open3d computes exact point-to-mesh distances")
    mesh = trimesh.load(scene / "mesh_gt.ply", process=False)
    raycaster = o3d.t.geometry.RaycastingScene()
    raycaster.add_triangles(o3d.core.Tensor(mesh.vertices, o3d.core.float32),
                            o3d.core.Tensor(mesh.faces, o3d.core.uint32))
    n_hits = 0
    for transforms, frame, rgba, depth in _frames(scene):
        origin, dirs = _rays_from_json(transforms, frame, 32, 32)
        hit = np.isfinite(depth)
        points = origin + depth[hit][:, None] * dirs[hit]
        dist = raycaster.compute_distance(o3d.core.Tensor(points, o3d.core.float32)).numpy()
        assert dist.max() < DEPTH_ON_MESH_TOL * _scene_size(meta)
        n_hits += hit.sum()
    assert n_hits > 500  # the temple covers a good part of every view


def test_depth_is_the_first_surface_along_each_ray(scene, meta):
    for transforms, frame, rgba, depth in _frames(scene):
        origin, dirs = _rays_from_json(transforms, frame, 32, 32)
        hit = np.isfinite(depth)
        points = origin + depth[hit][:, None] * dirs[hit]
        assert np.abs(_scene_sdf(meta, points)).max() < ON_SURFACE_TOL
        # before the hit (or along the whole ray on a miss) every point is outside every solid
        t_end = np.where(hit, depth - 1e-4, 2 * SMALL.camera_radius).reshape(-1)
        fractions = np.linspace(0.0, 1.0, 200)  # steps <= 0.04, thinner than any solid
        t_samples = t_end[:, None, None] * fractions[None, :, None]  # [H * W, 200, 1]
        samples = origin + t_samples * dirs.reshape(-1, 1, 3)
        assert _scene_sdf(meta, samples.reshape(-1, 3)).min() > 0


def test_alpha_matches_depth_away_from_edges(scene):
    n_inside = n_outside = 0
    for transforms, frame, rgba, depth in _frames(scene):
        # 3 x 3 windows of pixel-centre depths; a silhouette edge shows as a miss or a jump
        padded = np.pad(depth, 1, constant_values=np.inf)
        window = np.stack([padded[1 + dy:33 + dy, 1 + dx:33 + dx]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        hit = np.isfinite(window)
        finite = np.where(hit, window, 0.0)
        spread = np.where(hit.all(0), finite.max(0) - finite.min(0), np.inf)
        inside, outside = spread < SMOOTH_DEPTH_SPREAD, ~hit.any(0)
        assert (rgba[..., 3][inside] == 255).all()
        assert (rgba[..., 3][outside] == 0).all() and (rgba[..., :3][outside] == 0).all()
        n_inside, n_outside = n_inside + inside.sum(), n_outside + outside.sum()
    assert n_inside > 200 and n_outside > 200


def test_alpha_equals_hit_without_supersampling():
    cfg = DemoSceneConfig()
    rgba, depth = render_demo_view(demo_cameras(cfg, "test")[3], 40, 30, 35.0, supersample=1)
    np.testing.assert_array_equal(rgba[..., 3], np.isfinite(depth).astype(np.float32))


def test_scene_fits_in_every_default_view():
    cfg = DemoSceneConfig()
    focal = 0.5 * 24 / np.tan(0.5 * cfg.camera_angle_x)
    for split in SPLITS:
        for c2w in demo_cameras(cfg, split):
            alpha = render_demo_view(c2w, 24, 24, focal, supersample=1)[0][..., 3]
            border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
            assert (border == 0).all() and alpha.mean() > 0.1


def _centre_pixel(point: np.ndarray, view_dir: np.ndarray) -> tuple[np.ndarray, float]:
    """Colour [3] and depth of the centre pixel of a 33 x 33 camera looking at point from
    point + 2.5 view_dir (its centre ray passes through point exactly)."""
    eye = point + 2.5 * view_dir / np.linalg.norm(view_dir)
    rgba, depth = render_demo_view(look_at_opengl(eye, point), 33, 33, 30.0, supersample=1)
    return rgba[16, 16, :3].astype(np.float64), float(depth[16, 16])


def _shade(meta: dict, albedo: np.ndarray, normal: np.ndarray, view: np.ndarray, ks: float):
    """The documented shading of one point, from scene.json's light."""
    light = meta["light"]
    l_dir = np.array(light["direction"])
    half = (l_dir + view) / np.linalg.norm(l_dir + view)
    n_dot_l = max(normal @ l_dir, 0.0)
    spec = ks * max(normal @ half, 0.0) ** light["shininess"] if n_dot_l > 0 else 0.0
    return np.clip(albedo * (light["ambient"] + light["diffuse"] * n_dot_l) + spec, 0, 1)


def test_specular_sphere_is_view_dependent_and_diffuse_points_are_not(meta):
    sphere = next(p for p in meta["primitives"] if p["specular"] > 0)
    l_dir = np.array(meta["light"]["direction"])
    view_a = np.array([0.0, -1.0, 0.15]) / np.linalg.norm([0.0, -1.0, 0.15])
    normal = (l_dir + view_a) / np.linalg.norm(l_dir + view_a)  # the highlight faces view_a
    point = np.array(sphere["center"]) + sphere["radius"] * normal
    view_b = np.array([0.5, -1.0, -0.1]) / np.linalg.norm([0.5, -1.0, -0.1])
    albedo = albedo_at(point[None])[0]
    colours = []
    for view in (view_a, view_b):
        colour, depth = _centre_pixel(point, view)
        assert depth == pytest.approx(2.5, abs=ON_SURFACE_TOL)  # the point is visible
        np.testing.assert_allclose(colour, _shade(meta, albedo, normal, view, sphere["specular"]),
                                   atol=COLOR_TOL)
        colours.append(colour)
    assert np.abs(colours[0] - colours[1]).max() > SPECULAR_MIN_CHANGE

    top = next(p for p in meta["primitives"] if p["name"] == "base")["max"][2]
    floor = np.array([0.2, -0.81, top])  # on the base, in front of the roof's footprint
    seen = []
    for view in ([0.3, -1.0, 0.8], [-0.8, -0.6, 0.5], [0.05, -0.05, 1.0]):
        view = np.array(view) / np.linalg.norm(view)
        colour, depth = _centre_pixel(floor, view)
        assert depth == pytest.approx(2.5, abs=ON_SURFACE_TOL)
        seen.append(colour)
    up = np.array([0.0, 0.0, 1.0])
    expected = _shade(meta, albedo_at(floor[None])[0], normal=up, view=up, ks=0.0)
    for colour in seen:
        np.testing.assert_allclose(colour, expected, atol=COLOR_TOL)


def test_ground_truth_mesh_matches_the_primitives(scene, meta):
    mesh = trimesh.load(scene / "mesh_gt.ply", process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    size = _scene_size(meta)
    dist = np.abs(np.min([_sdf(p, mesh.vertices) for p in meta["primitives"]], axis=0))
    assert dist.max() < PLY_VERTEX_TOL
    centre_dist = np.abs(_scene_sdf(meta, mesh.triangles_center))
    assert centre_dist.max() < TESSELLATION_TOL * size

    volume, area = 0.0, 0.0
    for p in meta["primitives"]:  # solids only touch, so the union's volume is their sum
        if p["type"] == "box":
            ext = np.array(p["max"]) - p["min"]
            volume += ext.prod()
            area += 2 * (ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2])
        elif p["type"] == "sphere":
            volume += 4 / 3 * np.pi * p["radius"] ** 3
            area += 4 * np.pi * p["radius"] ** 2
        else:  # a column hides a disc of the base and one of the roof, and its own caps
            height = p["z_max"] - p["z_min"]
            volume += np.pi * p["radius"] ** 2 * height
            area += 2 * np.pi * p["radius"] * height - 2 * np.pi * p["radius"] ** 2
    assert mesh.volume == pytest.approx(volume, rel=VOLUME_RTOL)
    assert mesh.area == pytest.approx(area, rel=AREA_RTOL)


def test_mesh_colours_follow_the_documented_checker(scene, meta):
    mesh = trimesh.load(scene / "mesh_gt.ply", process=False)
    base = next(p for p in meta["primitives"] if p["name"] == "base")
    tex = base["texture"]
    assert tex["pattern"] == "checker"
    v = mesh.vertices
    top = (np.abs(v[:, 2] - base["max"][2]) < PLY_VERTEX_TOL) & (np.abs(v[:, :2]).max(1) < 0.4)
    cell = np.floor(v[top] / tex["parameter"] + 0.5).sum(1).astype(int) & 1
    expected = np.round(np.array(tex["colors"])[cell] * 255)
    assert top.sum() > 100 and len(np.unique(cell)) == 2
    np.testing.assert_array_equal(mesh.visual.vertex_colors[top, :3], expected)
    np.testing.assert_array_equal(np.round(albedo_at(v[top]) * 255), expected)


def test_make_demo_scene_keeps_refuses_and_replaces(scene, tmp_path):
    stamp = (scene / "scene.json").stat().st_mtime_ns
    assert make_demo_scene(scene, SMALL) == scene  # same config: kept as it is
    assert (scene / "scene.json").stat().st_mtime_ns == stamp

    other = DemoSceneConfig(resolution=8, n_train=1, n_val=1, n_test=1)
    with pytest.raises(SceneError, match="another config"):
        make_demo_scene(scene, other)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SceneError, match="not the demo scene"):
        make_demo_scene(foreign, other)
    assert (foreign / "notes.txt").read_text() == "keep me"

    make_demo_scene(foreign, other, overwrite=True)
    assert not (foreign / "notes.txt").exists()
    assert iio.imread(foreign / "train" / "r_0.png").shape == (8, 8, 4)
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no temporary folders left beside it


def test_ensure_demo_scene_fills_in_missing_scenes(tmp_path):
    cfg = DemoSceneConfig(resolution=8, n_train=2, n_val=1, n_test=1)
    path = ensure_demo_scene(tmp_path / "demo", cfg)
    assert (path / "train" / "r_1.png").is_file()
    (path / "train" / "r_1.png").unlink()
    ensure_demo_scene(path, cfg)
    assert (path / "train" / "r_1.png").is_file()
    stamp = (path / "scene.json").stat().st_mtime_ns
    ensure_demo_scene(path, DemoSceneConfig(resolution=9))  # complete: used as it is
    assert (path / "scene.json").stat().st_mtime_ns == stamp
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x")
    with pytest.raises(SceneError, match="holds no demo scene"):
        ensure_demo_scene(tmp_path / "other")


@pytest.mark.parametrize("field, value", [("resolution", 0), ("n_train", 0), ("supersample", 0),
                                          ("camera_radius", 1.0), ("camera_angle_x", 4.0),
                                          ("seed", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=field):
        DemoSceneConfig(**{field: value})


def _load_tool():
    path = Path(__file__).parents[1] / "tools" / "make_demo_scene.py"
    spec = importlib.util.spec_from_file_location("make_demo_scene_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_writes_and_exits_2_on_a_conflict(tmp_path, capsys):
    tool = _load_tool()
    out = tmp_path / "demo"
    tool.main(["--out", str(out), "--resolution", "6"])
    assert "demo scene ready" in capsys.readouterr().out
    assert iio.imread(out / "test" / "r_0.png").shape == (6, 6, 4)
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", str(out), "--resolution", "7"])
    assert exit_info.value.code == 2
    assert "overwrite" in capsys.readouterr().err
    tool.main(["--out", str(out), "--resolution", "7", "--overwrite"])
    assert iio.imread(out / "test" / "r_0.png").shape == (7, 7, 4)

"""The built-in demo scene: a procedural temple written in the Blender (nerf_synthetic) layout.

The geometry and shading live in `demo_geometry` (exact ray tracing) and the ground-truth mesh
in `demo_mesh`; this module places the cameras, renders the views and writes the folder:

    transforms_{train,val,test}.json  camera_angle_x; frames with file_path "./train/r_0",
                                      transform_matrix (4x4 camera-to-world, OpenGL axes: x right,
                                      y up, the camera looks along -z) and depth_path
    {split}/r_{i}.png                 RGBA uint8, linear colours; straight alpha = fraction of the
                                      s x s jittered subpixel rays that hit, RGB = mean colour of
                                      those hits (0 where none does)
    {split}/r_{i}_depth.npy           float32 [H, W]: t of the unit ray through the pixel centre
                                      (+0.5), np.inf where it hits nothing
    mesh_gt.ply                       the visible surfaces, watertight, albedo vertex colours
    scene.json                        primitives, textures, light, aabb and the generating config

Cameras: Fibonacci spirals (equal-area in z) over elevations -45 to 80 degrees at a fixed
radius, all looking at the origin; each split has its own azimuth offset. The band reaches below
the temple, as a heritage scan turns the object over: every surface of the ground truth is then
seen by some training camera, so a mesh can be measured against all of it (with the band 10-80
degrees of session 1 the base's underside, 18% of the area, was never seen). Generation is
deterministic.
"""

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from nerf.datasets.demo_geometry import (AMBIENT, DIFFUSE, LIGHT_DIR, SHININESS, albedo_at,
                                         scene_aabb, scene_primitives, trace_rays)
from nerf.datasets.demo_mesh import ground_truth_mesh
from nerf.errors import ConfigError, SceneError
from nerf.rotations import look_at

__all__ = ["DemoSceneConfig", "albedo_at", "demo_cameras", "ensure_demo_scene",
           "ground_truth_mesh", "look_at_opengl", "make_demo_scene", "render_demo_view",
           "scene_aabb", "scene_primitives"]

SPLITS = ("train", "val", "test")
GENERATOR = "nerf.datasets.demo"

_AZIMUTH_OFFSET = {"train": 0.0, "val": 1.1, "test": 2.3}  # radians, so splits do not share views
_RAYS_PER_CHUNK = 1 << 18  # bounds the memory of one tracing batch
_WORLD_UP = (0.0, 0.0, 1.0)  # the demo world's up: z


@dataclass(frozen=True)
class DemoSceneConfig:
    """How the demo scene's images are generated (the geometry is fixed)."""

    resolution: int = 200  # image width = height in pixels
    n_train: int = 100  # training views, a Fibonacci spiral over the elevation band
    n_val: int = 10  # validation views, the same band with another azimuth offset
    n_test: int = 20  # test views, the same band with a third azimuth offset
    supersample: int = 2  # s: s x s jittered subpixel rays per pixel (1: one ray at the centre)
    camera_radius: float = 4.0  # distance of every camera from the origin, world units
    camera_angle_x: float = 0.85  # horizontal field of view, radians: the temple spans 55-83% of it
    elevation_min: float = -45.0  # lowest camera elevation, degrees above the z = 0 plane
    elevation_max: float = 80.0  # highest camera elevation, degrees
    seed: int = 0  # seed of the subpixel jitter

    def __post_init__(self):
        for name in ("resolution", "n_train", "n_val", "n_test", "supersample"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"DemoSceneConfig.{name}: must be >= 1, got {value}")
        if self.seed < 0:
            raise ConfigError(f"DemoSceneConfig.seed: must be >= 0, got {self.seed}")
        reach = float(np.linalg.norm(np.abs(scene_aabb()).max(0)))
        if self.camera_radius <= reach:
            raise ConfigError(f"DemoSceneConfig.camera_radius: {self.camera_radius} puts cameras "
                              f"inside the scene; use more than {reach:.2f}")
        if not -90.0 < self.elevation_min < self.elevation_max < 90.0:
            raise ConfigError(f"DemoSceneConfig: elevation band [{self.elevation_min}, "
                              f"{self.elevation_max}] must satisfy -90 < min < max < 90")
        if not 0.0 < self.camera_angle_x < np.pi:
            raise ConfigError(f"DemoSceneConfig.camera_angle_x: {self.camera_angle_x} "
                              "is not in (0, pi)")


def _pixel_rays(c2w_opengl, width, height, focal, px, py):
    """World rays through pixel coordinates px, py [M] of an OpenGL camera (x right, y up, -z)."""
    cam = np.stack([(px - width / 2) / focal, -(py - height / 2) / focal, -np.ones_like(px)], -1)
    d = cam @ c2w_opengl[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return np.broadcast_to(c2w_opengl[:3, 3], d.shape), d


def render_demo_view(
    c2w_opengl: np.ndarray,  # [4, 4] camera-to-world, OpenGL axes
    width: int,
    height: int,
    focal: float,
    *,
    supersample: int = 2,
    seed: int | tuple[int, ...] = 0,
) -> tuple[np.ndarray, np.ndarray]:  # rgba [H, W, 4] float32, depth [H, W] float32
    """Ray trace one view of the temple.

    Args:
        c2w_opengl: [4, 4] camera-to-world matrix (x right, y up, the camera looks along -z).
        width, height: image size in pixels; principal point at the image centre.
        focal: focal length in pixels (square pixels).
        supersample: s; each pixel averages s x s rays on a jittered grid (s = 1: its centre).
        seed: seed of the jitter.
    Returns:
        rgba [H, W, 4] float32 in [0, 1], straight alpha = hit fraction; depth [H, W] float32,
        t of the ray through the pixel centre, np.inf where it misses.
    """
    c2w_opengl = np.asarray(c2w_opengl, dtype=np.float64)
    if c2w_opengl.shape != (4, 4):
        raise ValueError(f"render_demo_view: c2w_opengl must be [4, 4], got {c2w_opengl.shape}")
    if min(width, height, supersample) < 1 or not focal > 0:
        raise ValueError(f"render_demo_view: width {width}, height {height} and supersample "
                         f"{supersample} must be >= 1 and focal {focal} > 0")
    s = supersample
    rng = np.random.default_rng(seed)
    rgba = np.zeros((height, width, 4), np.float32)
    depth = np.zeros((height, width), np.float32)
    rows = max(1, _RAYS_PER_CHUNK // (width * s * s))
    grid = np.arange(s)
    for r0 in range(0, height, rows):
        j, i = np.meshgrid(np.arange(r0, min(r0 + rows, height)), np.arange(width), indexing="ij")
        o, d = _pixel_rays(c2w_opengl, width, height, focal, i + 0.5, j + 0.5)
        depth[r0:r0 + len(j)] = trace_rays(o.reshape(-1, 3), d.reshape(-1, 3))[0].reshape(j.shape)
        # jittered grid: subpixel (a, b) samples [a, a + 1) / s x [b, b + 1) / s of the pixel
        jitter = rng.random((*j.shape, s, s, 2)) if s > 1 else np.full((*j.shape, 1, 1, 2), 0.5)
        px = i[..., None, None] + (grid[:, None] + jitter[..., 0]) / s
        py = j[..., None, None] + (grid[None, :] + jitter[..., 1]) / s
        o, d = _pixel_rays(c2w_opengl, width, height, focal, px, py)
        t, _, rgb = trace_rays(o.reshape(-1, 3), d.reshape(-1, 3))
        hit = np.isfinite(t).reshape(*j.shape, s * s)
        count = hit.sum(-1)
        rgb_sum = (rgb.reshape(*j.shape, s * s, 3) * hit[..., None]).sum(-2)
        rgba[r0:r0 + len(j), :, :3] = rgb_sum / np.maximum(count, 1)[..., None]
        rgba[r0:r0 + len(j), :, 3] = count / (s * s)
    return rgba, depth


def look_at_opengl(eye: np.ndarray, target: np.ndarray) -> np.ndarray:  # [3], [3] -> [4, 4]
    """Camera-to-world matrix (OpenGL axes) of a camera at eye looking at target, z up. [4, 4]"""
    return look_at(eye, target, _WORLD_UP, opengl=True)


def demo_cameras(cfg: DemoSceneConfig, split: str) -> np.ndarray:  # -> [C, 4, 4]
    """Camera-to-world matrices (OpenGL axes) of one split: a Fibonacci spiral over the band of
    elevations, equal-area in z, all cameras at cfg.camera_radius looking at the origin."""
    if split not in SPLITS:
        raise ValueError(f"demo_cameras: split must be one of {SPLITS}, got {split!r}")
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    lo, hi = np.sin(np.radians([cfg.elevation_min, cfg.elevation_max]))
    z = lo + (hi - lo) * (np.arange(n) + 0.5) / n
    azimuth = np.arange(n) * np.pi * (3.0 - np.sqrt(5.0)) + _AZIMUTH_OFFSET[split]
    ring = np.sqrt(1.0 - z * z)
    eyes = cfg.camera_radius * np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], 1)
    return np.stack([look_at_opengl(e, np.zeros(3)) for e in eyes])


def _scene_meta(cfg: DemoSceneConfig) -> dict:
    return {
        "generator": GENERATOR,
        "config": asdict(cfg),
        "up": [0.0, 0.0, 1.0],
        "aabb": scene_aabb().tolist(),
        "light": {"direction": LIGHT_DIR.tolist(), "ambient": AMBIENT, "diffuse": DIFFUSE,
                  "shininess": SHININESS},
        "shading": "albedo * (ambient + diffuse * max(0, n.l)) + specular * max(0, n.h)^shininess,"
                   " clipped to [0, 1], linear RGB, no shadows",
        "depth": "float32 .npy [H, W]: distance t along the unit ray through the pixel centre"
                 " (+0.5), inf where the ray hits nothing",
        "primitives": [p.to_json() for p in scene_primitives()],
    }


def _write_scene(folder: Path, cfg: DemoSceneConfig) -> None:
    """Render every split and write the whole scene into an existing empty folder."""
    res = cfg.resolution
    focal = 0.5 * res / np.tan(0.5 * cfg.camera_angle_x)
    for split_id, split in enumerate(SPLITS):
        (folder / split).mkdir()
        frames = []
        for k, c2w in enumerate(demo_cameras(cfg, split)):
            rgba, depth = render_demo_view(c2w, res, res, focal, supersample=cfg.supersample,
                                           seed=(cfg.seed, split_id, k))
            iio.imwrite(folder / split / f"r_{k}.png", np.round(rgba * 255).astype(np.uint8))
            np.save(folder / split / f"r_{k}_depth.npy", depth)
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist(),
                           "depth_path": f"./{split}/r_{k}_depth.npy"})
        meta = {"camera_angle_x": cfg.camera_angle_x, "frames": frames}
        (folder / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))
    ground_truth_mesh().export(folder / "mesh_gt.ply", file_type="ply", encoding="binary")
    (folder / "scene.json").write_text(json.dumps(_scene_meta(cfg), indent=2))


def _demo_config_of(folder: Path) -> dict | None:
    """The config recorded in a demo scene's scene.json, None if the folder is not one."""
    try:
        meta = json.loads((folder / "scene.json").read_text())
    except (OSError, ValueError):
        return None
    is_demo = isinstance(meta, dict) and meta.get("generator") == GENERATOR
    return meta.get("config") if is_demo else None


def _is_complete(folder: Path) -> bool:
    """Whether folder is a demo scene with every file its transforms name."""
    if _demo_config_of(folder) is None or not (folder / "mesh_gt.ply").is_file():
        return False
    for split in SPLITS:
        try:
            frames = json.loads((folder / f"transforms_{split}.json").read_text())["frames"]
            paths = [f["file_path"] + ".png" for f in frames] + [f["depth_path"] for f in frames]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not all((folder / p).is_file() for p in paths):
            return False
    return True


def make_demo_scene(
    out_dir: str | Path, cfg: DemoSceneConfig = DemoSceneConfig(), overwrite: bool = False
) -> Path:
    """Generate the demo scene into out_dir, atomically (built beside it, then renamed).

    A complete demo scene already there with the same config is kept as it is.

    Args:
        out_dir: the scene folder to create.
        cfg: image size, view counts, supersampling, cameras and seed.
        overwrite: replace an existing folder that is not this scene.
    Returns:
        The scene folder.
    Raises:
        SceneError: out_dir exists, is something else and overwrite is False.
    """
    out = Path(out_dir)
    wanted = json.loads(json.dumps(asdict(cfg)))  # as it reads back from scene.json

    def up_to_date() -> bool:
        return _demo_config_of(out) == wanted and _is_complete(out)

    if out.exists():
        if up_to_date():
            return out
        if not out.is_dir():
            raise SceneError(f"{out}: exists and is not a folder; choose another demo scene path")
        if not overwrite:
            found = ("a demo scene made with another config" if _demo_config_of(out)
                     else "not the demo scene")
            raise SceneError(f"{out}: exists and is {found} (or is incomplete); "
                             "pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_scene(tmp, cfg)
        if up_to_date():  # another process finished the same scene meanwhile
            shutil.rmtree(tmp)
            return out
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_demo_scene(path: str | Path, cfg: DemoSceneConfig | None = None) -> Path:
    """The demo scene at path, generated first if it is missing or incomplete.

    A complete demo scene is used whatever config made it; cfg (default: DemoSceneConfig())
    only matters when the scene has to be generated.

    Raises:
        SceneError: path holds something that is not a demo scene.
    """
    path = Path(path)
    if _is_complete(path):
        return path
    if path.is_dir() and any(path.iterdir()) and _demo_config_of(path) is None:
        raise SceneError(f"{path}: is not empty and holds no demo scene (no scene.json from "
                         f"{GENERATOR}); move it away or choose another demo scene path")
    return make_demo_scene(path, cfg or DemoSceneConfig(), overwrite=True)

"""Tiny scenes written to a temporary folder, for the reader tests (not collected by pytest).

Cameras sit on a ring around `TARGET` and look at it, so every camera's principal point sees
the target: an analytic check of each format's pose convention.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from nerf.datasets.colmap_io import ColmapCamera, ColmapImage, ColmapModel, write_model

TARGET = np.array([0.3, -0.2, 0.1])


def write_image(path: Path, width: int, height: int, channels: int = 3, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA" if channels == 4 else "RGB").save(path)


def look_at_opencv(eye: np.ndarray, target: np.ndarray = TARGET, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """c2w [4, 4], OpenCV axes (x right, y down, z towards the target)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], axis=1)
    c2w[:3, 3] = eye
    return c2w


def look_at_opengl(eye: np.ndarray, target: np.ndarray = TARGET, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """c2w [4, 4], OpenGL axes (x right, y up, looking along -z), built independently."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, cam_up, back], axis=1)
    c2w[:3, 3] = eye
    return c2w


def ring_eyes(n: int, radius: float = 4.0, height: float = 1.0) -> np.ndarray:  # [n, 3]
    angles = 2 * math.pi * np.arange(n) / n
    return TARGET + np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(n, height)], axis=1)


def write_blender(
    root: Path, counts=(3, 2, 2), size=(8, 6), angle: float = 0.8, channels: int = 4
) -> list[np.ndarray]:
    """transforms_{train,val,test}.json (a count of None skips that file); returns OpenGL c2w."""
    root.mkdir(parents=True, exist_ok=True)
    poses = []
    for split, count in zip(("train", "val", "test"), counts):
        if count is None:
            continue
        frames = []
        for i in range(count):
            c2w = look_at_opengl(ring_eyes(count, height=0.5 + len(poses))[i])
            poses.append(c2w)
            write_image(root / split / f"r_{i}.png", *size, channels=channels, seed=len(poses))
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
        meta = {"camera_angle_x": angle, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return poses


def write_transforms(root: Path, n: int = 10, size=(8, 6), meta: dict | None = None) -> list[np.ndarray]:
    """transforms.json with global pinhole intrinsics (fl 7, 7.5, cx 4.2, cy 2.9); OpenGL c2w."""
    root.mkdir(parents=True, exist_ok=True)
    poses, frames = [], []
    for i, eye in enumerate(ring_eyes(n)):
        poses.append(look_at_opengl(eye))
        write_image(root / "images" / f"{i:03d}.png", *size, seed=i)
        frames.append({"file_path": f"images/{i:03d}.png", "transform_matrix": poses[-1].tolist()})
    full = {"fl_x": 7.0, "fl_y": 7.5, "cx": 4.2, "cy": 2.9, "w": size[0], "h": size[1], "frames": frames}
    full.update(meta or {})
    (root / "transforms.json").write_text(json.dumps(full))
    return poses


def write_llff(
    root: Path, n: int = 9, full_size=(64, 48), focal: float = 50.0, folders=(4,)
) -> tuple[np.ndarray, np.ndarray]:
    """poses_bounds.npy as LLFF's imgs2poses writes it, plus images_k/ folders; (OpenCV c2w, bounds)."""
    root.mkdir(parents=True, exist_ok=True)
    c2w = np.stack([look_at_opencv(eye) for eye in ring_eyes(n, radius=0.5, height=-4.0)])
    # imgs2poses: from COLMAP's [right, down, forward] columns to [down, right, backwards]
    llff = np.concatenate([c2w[:, :3, 1:2], c2w[:, :3, 0:1], -c2w[:, :3, 2:3], c2w[:, :3, 3:4]], axis=2)
    hwf = np.tile(np.array([full_size[1], full_size[0], focal])[None, :, None], (n, 1, 1))
    bounds = np.stack([np.linspace(2.0, 3.0, n), np.linspace(8.0, 10.0, n)], axis=1)
    data = np.concatenate([np.concatenate([llff, hwf], axis=2).reshape(n, 15), bounds], axis=1)
    np.save(root / "poses_bounds.npy", data)
    for k in folders:
        name = "images" if k == 1 else f"images_{k}"
        for i in range(n):
            write_image(root / name / f"image{i:03d}.png", full_size[0] // k, full_size[1] // k, seed=i)
    return c2w, bounds


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:  # (w, x, y, z) unit -> [3, 3]
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:  # [3, 3] -> (w, x, y, z)
    """Shepperd's method: divide by the largest of the four squared components."""
    t = np.trace(r)
    cases = [t, r[0, 0], r[1, 1], r[2, 2]]
    k = int(np.argmax(cases))
    if k == 0:
        w = math.sqrt(1 + t) / 2
        q = [w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)]
    elif k == 1:
        x = math.sqrt(1 + r[0, 0] - r[1, 1] - r[2, 2]) / 2
        q = [(r[2, 1] - r[1, 2]) / (4 * x), x, (r[0, 1] + r[1, 0]) / (4 * x), (r[0, 2] + r[2, 0]) / (4 * x)]
    elif k == 2:
        y = math.sqrt(1 - r[0, 0] + r[1, 1] - r[2, 2]) / 2
        q = [(r[0, 2] - r[2, 0]) / (4 * y), (r[0, 1] + r[1, 0]) / (4 * y), y, (r[1, 2] + r[2, 1]) / (4 * y)]
    else:
        z = math.sqrt(1 - r[0, 0] - r[1, 1] + r[2, 2]) / 2
        q = [(r[1, 0] - r[0, 1]) / (4 * z), (r[0, 2] + r[2, 0]) / (4 * z), (r[1, 2] + r[2, 1]) / (4 * z), z]
    return np.array(q)


def write_colmap(
    root: Path, n: int = 9, size=(8, 6), model: str = "PINHOLE", params=(7.0, 7.5, 4.2, 2.9),
    binary: bool = True, names=None,
) -> np.ndarray:
    """sparse/0 with one camera and n images looking at TARGET, plus images/; OpenCV c2w by name."""
    names = names or [f"{i:03d}.png" for i in range(n)]
    c2w = np.stack([look_at_opencv(eye) for eye in ring_eyes(n)])
    cameras = {1: ColmapCamera(1, model, size[0], size[1], np.array(params, dtype=np.float64))}
    images = {}
    for i, (pose, name) in enumerate(zip(c2w, names)):
        w2c_rot = pose[:3, :3].T
        qvec = matrix_to_quaternion(w2c_rot)
        tvec = -w2c_rot @ pose[:3, 3]
        images[i + 1] = ColmapImage(
            i + 1, qvec, tvec, 1, name, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
        )
        write_image(root / "images" / name, *size, seed=i)
    write_model(ColmapModel(cameras, images, {}), root / "sparse" / "0", binary=binary)
    order = sorted(range(n), key=lambda i: names[i])
    return c2w[order]


# --- images of different sizes (one camera per size) ------------------------------------------

MIXED_SIZES = ((40, 30), (30, 40), (36, 24))  # landscape, portrait, a wider landscape


def mixed_intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of a camera of `width` x `height`: distinct per size, off-centre."""
    return 0.9 * width, 0.95 * width, width / 2 + 0.3, height / 2 - 0.2


def write_colmap_sizes(root: Path, n: int = 9, sizes=MIXED_SIZES, binary: bool = True) -> list[tuple[int, int]]:
    """sparse/0 with one PINHOLE camera per size (image i uses camera i % len(sizes) + 1,
    `mixed_intrinsics`), images of their camera's size; returns each image's (w, h) in name order."""
    c2w = np.stack([look_at_opencv(eye) for eye in ring_eyes(n)])
    cameras = {j + 1: ColmapCamera(j + 1, "PINHOLE", w, h, np.array(mixed_intrinsics(w, h)))
               for j, (w, h) in enumerate(sizes)}
    images, image_sizes = {}, []
    for i, pose in enumerate(c2w):
        cam = i % len(sizes) + 1
        w2c_rot = pose[:3, :3].T
        images[i + 1] = ColmapImage(i + 1, matrix_to_quaternion(w2c_rot), -w2c_rot @ pose[:3, 3], cam,
                                    f"{i:03d}.png", np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
        write_image(root / "images" / f"{i:03d}.png", *sizes[cam - 1], seed=i)
        image_sizes.append(sizes[cam - 1])
    write_model(ColmapModel(cameras, images, {}), root / "sparse" / "0", binary=binary)
    return image_sizes


def write_transforms_sizes(root: Path, n: int = 9, sizes=MIXED_SIZES) -> list[tuple[int, int]]:
    """transforms.json whose frames carry their own w, h, fl_x, fl_y, cx, cy (`mixed_intrinsics`;
    frame i has sizes[i % len(sizes)]); returns each frame's (w, h)."""
    root.mkdir(parents=True, exist_ok=True)
    frames, frame_sizes = [], []
    for i, eye in enumerate(ring_eyes(n)):
        w, h = sizes[i % len(sizes)]
        fx, fy, cx, cy = mixed_intrinsics(w, h)
        write_image(root / "images" / f"{i:03d}.png", w, h, seed=i)
        frames.append({"file_path": f"images/{i:03d}.png", "transform_matrix": look_at_opengl(eye).tolist(),
                       "w": w, "h": h, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy})
        frame_sizes.append((w, h))
    (root / "transforms.json").write_text(json.dumps({"frames": frames}))
    return frame_sizes

"""COLMAP's text model files (cameras.txt, images.txt, points3D.txt): readers and writers.

The layout follows COLMAP's `cameras.txt` / `images.txt` / `points3D.txt`. Floats are written
with Python's shortest round-trip repr, so text round trips are exact. Readers raise SceneError
naming the file, the line and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerf.datasets.colmap_model import CAMERA_MODEL_BY_NAME, ColmapCamera, ColmapImage, ColmapPoint3D, camera_spec
from nerf.errors import SceneError


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) of every line that is not a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SceneError(f"COLMAP model file {path}: not valid UTF-8 text ({err})") from err
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if not line.lstrip().startswith("#")
    ]


def _parse(path: Path, number: int, values: list[str], kinds: str, what: str) -> list:
    """Convert tokens by kind letters ('i' int, 'f' float); errors name the file and line."""
    if len(values) != len(kinds):
        raise SceneError(f"COLMAP model file {path} line {number}: {what} needs {len(kinds)} values, got {len(values)}")
    try:
        return [int(v) if k == "i" else float(v) for v, k in zip(values, kinds)]
    except ValueError as err:
        raise SceneError(f"COLMAP model file {path} line {number}: bad number in {what} ({err})") from err


def _read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in _data_lines(path):
        if not line:
            continue
        tokens = line.split()
        if len(tokens) < 4:
            raise SceneError(f"COLMAP model file {path} line {number}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'")
        spec = CAMERA_MODEL_BY_NAME.get(tokens[1])
        if spec is None:
            raise SceneError(f"COLMAP model file {path} line {number}: unknown camera model {tokens[1]!r}")
        values = _parse(path, number, tokens[:1] + tokens[2:], "iii" + "f" * spec.num_params, f"a {spec.name} camera")
        camera_id, width, height = values[:3]
        cameras[camera_id] = ColmapCamera(camera_id, spec.name, width, height, np.array(values[3:], dtype=np.float64))
    return cameras


def _read_images_text(path: Path) -> dict[int, ColmapImage]:
    images = {}
    lines = _data_lines(path)
    # Image records are two lines each; only the point line may be blank, so skip blank
    # lines only where a header is expected.
    index = 0
    while index < len(lines):
        number, line = lines[index]
        if not line:
            index += 1
            continue
        tokens = line.split(maxsplit=9)
        if len(tokens) < 10:
            raise SceneError(
                f"COLMAP model file {path} line {number}: expected "
                "'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got {len(tokens)} fields"
            )
        values = _parse(path, number, tokens[:9], "ifffffffi", "an image header")
        if index + 1 >= len(lines):
            raise SceneError(f"COLMAP model file {path} line {number}: image {values[0]} has no 2D point line (file truncated?)")
        points_number, points_line = lines[index + 1]
        point_tokens = points_line.split()
        if len(point_tokens) % 3:
            raise SceneError(
                f"COLMAP model file {path} line {points_number}: 2D points come as 'X Y POINT3D_ID' "
                f"triples, got {len(point_tokens)} values"
            )
        parsed = _parse(path, points_number, point_tokens, "ffi" * (len(point_tokens) // 3), "the 2D points")
        triples = np.array(parsed, dtype=np.float64).reshape(-1, 3)
        images[values[0]] = ColmapImage(
            image_id=values[0],
            qvec=np.array(values[1:5]),
            tvec=np.array(values[5:8]),
            camera_id=values[8],
            name=tokens[9],
            xys=triples[:, :2].copy(),
            point3d_ids=np.array(parsed[2::3], dtype=np.int64),
        )
        index += 2
    return images


def _read_points3d_text(path: Path) -> dict[int, ColmapPoint3D]:
    points = {}
    for number, line in _data_lines(path):
        if not line:
            continue
        tokens = line.split()
        if len(tokens) < 8 or (len(tokens) - 8) % 2:
            raise SceneError(
                f"COLMAP model file {path} line {number}: expected "
                "'POINT3D_ID X Y Z R G B ERROR (IMAGE_ID POINT2D_IDX)...'"
            )
        values = _parse(path, number, tokens, "ifffiiif" + "i" * (len(tokens) - 8), "a 3D point")
        track = np.array(values[8:], dtype=np.int64).reshape(-1, 2)
        if not all(0 <= c <= 255 for c in values[4:7]):
            raise SceneError(f"COLMAP model file {path} line {number}: colour {values[4:7]} is outside 0..255")
        points[values[0]] = ColmapPoint3D(
            point3d_id=values[0],
            xyz=np.array(values[1:4]),
            rgb=np.array(values[4:7], dtype=np.uint8),
            error=values[7],
            image_ids=track[:, 0].copy(),
            point2d_idxs=track[:, 1].copy(),
        )
    return points


def _floats(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in values)


def _write_cameras_text(cameras: dict[int, ColmapCamera], path: Path) -> None:
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cameras)}",
    ]
    for camera in cameras.values():
        camera_spec(camera)
        lines.append(f"{camera.camera_id} {camera.model} {camera.width} {camera.height} {_floats(camera.params)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_images_text(images: dict[int, ColmapImage], path: Path) -> None:
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(images)}",
    ]
    for image in images.values():
        lines.append(f"{image.image_id} {_floats(image.qvec)} {_floats(image.tvec)} {image.camera_id} {image.name}")
        lines.append(
            " ".join(f"{x!r} {y!r} {int(p)}" for (x, y), p in zip(image.xys.tolist(), image.point3d_ids))
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_points3d_text(points3d: dict[int, ColmapPoint3D], path: Path) -> None:
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(points3d)}",
    ]
    for point in points3d.values():
        track = " ".join(f"{i} {j}" for i, j in zip(point.image_ids.tolist(), point.point2d_idxs.tolist()))
        r, g, b = (int(c) for c in point.rgb)
        lines.append(f"{point.point3d_id} {_floats(point.xyz)} {r} {g} {b} {float(point.error)!r} {track}".rstrip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# (cameras, images, points3D) functions, in the order of colmap_io's file stems
READERS = (_read_cameras_text, _read_images_text, _read_points3d_text)
WRITERS = (_write_cameras_text, _write_images_text, _write_points3d_text)

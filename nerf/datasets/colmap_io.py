"""Read and write COLMAP sparse models (cameras, images, points3D) in binary and text form.

Vocabulary (COLMAP's own, kept as is):
    camera   intrinsics shared by images: model name, width, height, params (model order).
    image    a registered photo: `qvec` (w, x, y, z) and `tvec` give the world-to-camera pose
             x_cam = R(qvec) @ x_world + tvec in COLMAP's OpenCV axes (x right, y down, z forward);
             `xys [P, 2]` are its 2D keypoints and `point3d_ids [P]` their 3D points (-1: none).
    point3D  a triangulated point: xyz, rgb (uint8), mean reprojection error, track of
             (image_id, point2D_idx) pairs.

The binary layout (little endian) follows COLMAP's `ReadCamerasBinary` / `ReadImagesBinary` /
`ReadPoints3DBinary`; the text layout follows its `cameras.txt` / `images.txt` / `points3D.txt`.
Floats are written in text with Python's shortest round-trip repr, so text round trips are exact.
Newer COLMAP versions also write rigs and frames; those files are not needed to pose images and
are neither read nor written here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerf.errors import SceneError


@dataclass(frozen=True)
class CameraModelSpec:
    """One COLMAP camera model: its id in binary files, its name and its parameter count."""

    model_id: int
    name: str
    num_params: int


# COLMAP's camera models (src/colmap/sensor/models.h), in id order.
CAMERA_MODELS: tuple[CameraModelSpec, ...] = (
    CameraModelSpec(0, "SIMPLE_PINHOLE", 3),  # f, cx, cy
    CameraModelSpec(1, "PINHOLE", 4),  # fx, fy, cx, cy
    CameraModelSpec(2, "SIMPLE_RADIAL", 4),  # f, cx, cy, k
    CameraModelSpec(3, "RADIAL", 5),  # f, cx, cy, k1, k2
    CameraModelSpec(4, "OPENCV", 8),  # fx, fy, cx, cy, k1, k2, p1, p2
    CameraModelSpec(5, "OPENCV_FISHEYE", 8),  # fx, fy, cx, cy, k1, k2, k3, k4
    CameraModelSpec(6, "FULL_OPENCV", 12),  # fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6
    CameraModelSpec(7, "FOV", 5),  # fx, fy, cx, cy, omega
    CameraModelSpec(8, "SIMPLE_RADIAL_FISHEYE", 4),  # f, cx, cy, k
    CameraModelSpec(9, "RADIAL_FISHEYE", 5),  # f, cx, cy, k1, k2
    CameraModelSpec(10, "THIN_PRISM_FISHEYE", 12),  # fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1
    CameraModelSpec(11, "RAD_TAN_THIN_PRISM_FISHEYE", 16),  # fx, fy, cx, cy, k0..k5, p0, p1, s0..s3
    CameraModelSpec(12, "SIMPLE_DIVISION", 4),  # f, cx, cy, k
    CameraModelSpec(13, "DIVISION", 5),  # fx, fy, cx, cy, k
    CameraModelSpec(14, "SIMPLE_FISHEYE", 3),  # f, cx, cy
    CameraModelSpec(15, "FISHEYE", 4),  # fx, fy, cx, cy
    CameraModelSpec(16, "EUCM", 6),  # fx, fy, cx, cy, alpha, beta
    CameraModelSpec(17, "EQUIRECTANGULAR", 2),  # w, h
)
CAMERA_MODEL_BY_ID = {spec.model_id: spec for spec in CAMERA_MODELS}
CAMERA_MODEL_BY_NAME = {spec.name: spec for spec in CAMERA_MODELS}

# COLMAP stores "no 3D point" as the largest uint64; read as int64 it is -1.
INVALID_POINT3D_ID = -1


@dataclass(frozen=True, eq=False)
class ColmapCamera:
    """Intrinsics of one COLMAP camera; `params` are in the order of `model`'s definition."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [num_params] float64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColmapCamera):
            return NotImplemented
        return (
            (self.camera_id, self.model, self.width, self.height)
            == (other.camera_id, other.model, other.width, other.height)
            and np.array_equal(self.params, other.params)
        )


@dataclass(frozen=True, eq=False)
class ColmapImage:
    """One registered image: world-to-camera pose, camera id, file name and 2D observations."""

    image_id: int
    qvec: np.ndarray  # [4] float64 (w, x, y, z), rotation world -> camera
    tvec: np.ndarray  # [3] float64, translation world -> camera
    camera_id: int
    name: str
    xys: np.ndarray  # [P, 2] float64 pixel coordinates (COLMAP: pixel centres at +0.5)
    point3d_ids: np.ndarray  # [P] int64, -1 where the keypoint has no 3D point

    def rotmat(self) -> np.ndarray:  # [3, 3]
        """World-to-camera rotation matrix of this image."""
        return qvec_to_rotmat(self.qvec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColmapImage):
            return NotImplemented
        return (
            (self.image_id, self.camera_id, self.name) == (other.image_id, other.camera_id, other.name)
            and np.array_equal(self.qvec, other.qvec)
            and np.array_equal(self.tvec, other.tvec)
            and np.array_equal(self.xys, other.xys)
            and np.array_equal(self.point3d_ids, other.point3d_ids)
        )


@dataclass(frozen=True, eq=False)
class ColmapPoint3D:
    """One triangulated point and the observations (track) that support it."""

    point3d_id: int
    xyz: np.ndarray  # [3] float64
    rgb: np.ndarray  # [3] uint8
    error: float
    image_ids: np.ndarray  # [T] int64, the track's images
    point2d_idxs: np.ndarray  # [T] int64, index into that image's xys

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColmapPoint3D):
            return NotImplemented
        return (
            self.point3d_id == other.point3d_id
            and self.error == other.error
            and np.array_equal(self.xyz, other.xyz)
            and np.array_equal(self.rgb, other.rgb)
            and np.array_equal(self.image_ids, other.image_ids)
            and np.array_equal(self.point2d_idxs, other.point2d_idxs)
        )


@dataclass
class ColmapModel:
    """A sparse model: dictionaries keyed by COLMAP's ids."""

    cameras: dict[int, ColmapCamera] = field(default_factory=dict)
    images: dict[int, ColmapImage] = field(default_factory=dict)
    points3d: dict[int, ColmapPoint3D] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Rotations


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:  # qvec [4] (w, x, y, z) -> [3, 3]
    """Rotation matrix of a quaternion (w, x, y, z); the quaternion is normalised first.

    Args:
        qvec: [4] quaternion, scalar first (COLMAP's order).
    Returns:
        [3, 3] float64 rotation matrix.
    """
    q = np.asarray(qvec, dtype=np.float64)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"qvec must be a finite non-zero 4-vector, got {qvec!r}")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(rotmat: np.ndarray) -> np.ndarray:  # [3, 3] -> [4] (w, x, y, z)
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix.

    Uses the symmetric 4x4 matrix whose top eigenvector is the quaternion (Bar-Itzhack 2000),
    which stays accurate near 180-degree rotations and for slightly non-orthogonal input.

    Args:
        rotmat: [3, 3] rotation matrix.
    Returns:
        [4] float64 unit quaternion, scalar first.
    """
    r = np.asarray(rotmat, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"rotmat must be [3, 3], got shape {r.shape}")
    (rxx, ryx, rzx), (rxy, ryy, rzy), (rxz, ryz, rzz) = r  # COLMAP's naming: ryx = r[0, 1]
    k = (
        np.array(
            [
                [rxx - ryy - rzz, 0.0, 0.0, 0.0],
                [ryx + rxy, ryy - rxx - rzz, 0.0, 0.0],
                [rzx + rxz, rzy + ryz, rzz - rxx - ryy, 0.0],
                [ryz - rzy, rzx - rxz, rxy - ryx, rxx + ryy + rzz],
            ]
        )
        / 3.0
    )
    eigvals, eigvecs = np.linalg.eigh(k)
    x, y, z, w = eigvecs[:, np.argmax(eigvals)]
    qvec = np.array([w, x, y, z])
    return -qvec if qvec[0] < 0 else qvec


# --------------------------------------------------------------------------------------------
# Binary format


class _BinaryReader:
    """Sequential little-endian reader over a file's bytes that reports truncation clearly."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def fail(self, problem: str) -> SceneError:
        return SceneError(f"COLMAP model file {self.path}: {problem} (at byte {self.offset})")

    def take(self, n: int, what: str) -> bytes:
        if self.offset + n > len(self.data):
            raise self.fail(
                f"file is truncated while reading {what}: needs {n} bytes, "
                f"{len(self.data) - self.offset} left of {len(self.data)}"
            )
        chunk = self.data[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        if count < 0 or count * itemsize > len(self.data) - self.offset:
            raise self.fail(
                f"file is truncated or corrupt while reading {what}: {count} entries of "
                f"{itemsize} bytes announced, {len(self.data) - self.offset} bytes left"
            )
        return np.frombuffer(self.take(count * itemsize, what), dtype="<" + dtype).copy()

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\x00", self.offset)
        if end < 0:
            raise self.fail(f"file is truncated while reading {what}: no terminating NUL byte")
        raw = self.data[self.offset : end]
        self.offset = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.fail(f"{what} is not valid UTF-8 ({err})") from err

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise self.fail(f"{len(self.data) - self.offset} unexpected trailing bytes")


def _read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    reader = _BinaryReader(path)
    cameras = {}
    (num_cameras,) = reader.unpack("Q", "the camera count")
    for index in range(num_cameras):
        camera_id, model_id, width, height = reader.unpack("IiQQ", f"camera #{index} header")
        spec = CAMERA_MODEL_BY_ID.get(model_id)
        if spec is None:
            raise reader.fail(f"camera {camera_id} has unknown camera model id {model_id}")
        params = reader.array("f8", spec.num_params, f"camera {camera_id} parameters")
        cameras[camera_id] = ColmapCamera(camera_id, spec.name, width, height, params)
    reader.finish()
    return cameras


def _read_images_binary(path: Path) -> dict[int, ColmapImage]:
    reader = _BinaryReader(path)
    images = {}
    (num_images,) = reader.unpack("Q", "the image count")
    for index in range(num_images):
        header = reader.unpack("I7dI", f"image #{index} header")
        image_id, qvec, tvec, camera_id = header[0], header[1:5], header[5:8], header[8]
        name = reader.cstring(f"image {image_id} name")
        (num_points2d,) = reader.unpack("Q", f"image {image_id} point count")
        raw = reader.array("V24", num_points2d, f"image {image_id} 2D points")
        points = raw.view(np.dtype([("xy", "<f8", (2,)), ("id", "<i8")]))
        images[image_id] = ColmapImage(
            image_id=image_id,
            qvec=np.array(qvec),
            tvec=np.array(tvec),
            camera_id=camera_id,
            name=name,
            xys=np.ascontiguousarray(points["xy"]).reshape(-1, 2),
            point3d_ids=np.ascontiguousarray(points["id"]).reshape(-1).astype(np.int64),
        )
    reader.finish()
    return images


def _read_points3d_binary(path: Path) -> dict[int, ColmapPoint3D]:
    reader = _BinaryReader(path)
    points = {}
    (num_points,) = reader.unpack("Q", "the point count")
    for index in range(num_points):
        header = reader.unpack("Q3d3BdQ", f"point #{index} header")
        point_id, xyz, rgb, error, track_length = (
            header[0], header[1:4], header[4:7], header[7], header[8]
        )
        track = reader.array("u4", 2 * track_length, f"point {point_id} track").reshape(-1, 2)
        points[point_id] = ColmapPoint3D(
            point3d_id=point_id,
            xyz=np.array(xyz),
            rgb=np.array(rgb, dtype=np.uint8),
            error=error,
            image_ids=track[:, 0].astype(np.int64),
            point2d_idxs=track[:, 1].astype(np.int64),
        )
    reader.finish()
    return points


def _write_cameras_binary(cameras: dict[int, ColmapCamera], path: Path) -> None:
    chunks = [struct.pack("<Q", len(cameras))]
    for camera in cameras.values():
        spec = _camera_spec(camera)
        chunks.append(struct.pack("<IiQQ", camera.camera_id, spec.model_id, camera.width, camera.height))
        chunks.append(np.asarray(camera.params, dtype="<f8").tobytes())
    path.write_bytes(b"".join(chunks))


def _write_images_binary(images: dict[int, ColmapImage], path: Path) -> None:
    chunks = [struct.pack("<Q", len(images))]
    for image in images.values():
        chunks.append(struct.pack("<I7dI", image.image_id, *image.qvec, *image.tvec, image.camera_id))
        chunks.append(image.name.encode("utf-8") + b"\x00")
        points = np.empty(len(image.point3d_ids), dtype=[("xy", "<f8", (2,)), ("id", "<i8")])
        points["xy"] = image.xys
        points["id"] = image.point3d_ids
        chunks.append(struct.pack("<Q", len(points)))
        chunks.append(points.tobytes())
    path.write_bytes(b"".join(chunks))


def _write_points3d_binary(points3d: dict[int, ColmapPoint3D], path: Path) -> None:
    chunks = [struct.pack("<Q", len(points3d))]
    for point in points3d.values():
        chunks.append(
            struct.pack("<Q3d3BdQ", point.point3d_id, *point.xyz, *point.rgb, point.error, len(point.image_ids))
        )
        track = np.stack([point.image_ids, point.point2d_idxs], axis=1).astype("<u4")
        chunks.append(track.tobytes())
    path.write_bytes(b"".join(chunks))


# --------------------------------------------------------------------------------------------
# Text format


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
        _camera_spec(camera)
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


# --------------------------------------------------------------------------------------------
# Public entry points


def _camera_spec(camera: ColmapCamera) -> CameraModelSpec:
    spec = CAMERA_MODEL_BY_NAME.get(camera.model)
    if spec is None:
        raise SceneError(f"camera {camera.camera_id}: unknown COLMAP camera model {camera.model!r}")
    if len(camera.params) != spec.num_params:
        raise SceneError(
            f"camera {camera.camera_id}: model {spec.name} needs {spec.num_params} parameters, "
            f"got {len(camera.params)}"
        )
    return spec


_READERS = {
    ".bin": (_read_cameras_binary, _read_images_binary, _read_points3d_binary),
    ".txt": (_read_cameras_text, _read_images_text, _read_points3d_text),
}
_WRITERS = {
    ".bin": (_write_cameras_binary, _write_images_binary, _write_points3d_binary),
    ".txt": (_write_cameras_text, _write_images_text, _write_points3d_text),
}
_STEMS = ("cameras", "images", "points3D")


def detect_model_format(folder: str | Path) -> str:
    """Extension (".bin" or ".txt") of the complete COLMAP model in `folder`; binary wins."""
    folder = Path(folder)
    for ext in (".bin", ".txt"):
        if all((folder / f"{stem}{ext}").is_file() for stem in _STEMS):
            return ext
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise SceneError(
        f"COLMAP model folder {folder}: expected cameras, images and points3D as .bin or .txt; "
        f"found {present if present else 'nothing (missing or empty folder)'}"
    )


def read_model(folder: str | Path) -> ColmapModel:
    """Read a COLMAP sparse model, detecting binary (.bin) or text (.txt) files.

    Args:
        folder: directory holding cameras, images and points3D files (e.g. `sparse/0`).
    Returns:
        The model; raises SceneError naming the file and the problem if anything is malformed.
    """
    folder = Path(folder)
    ext = detect_model_format(folder)
    read_cameras, read_images, read_points = _READERS[ext]
    model = ColmapModel(
        cameras=read_cameras(folder / f"cameras{ext}"),
        images=read_images(folder / f"images{ext}"),
        points3d=read_points(folder / f"points3D{ext}"),
    )
    for image in model.images.values():
        if image.camera_id not in model.cameras:
            raise SceneError(
                f"COLMAP model file {folder / f'images{ext}'}: image {image.image_id} ({image.name}) "
                f"refers to camera {image.camera_id}, which is not in cameras{ext}"
            )
    return model


def write_model(model: ColmapModel, folder: str | Path, binary: bool = True) -> Path:
    """Write `model` as COLMAP cameras/images/points3D files (binary .bin or text .txt).

    Args:
        model: the sparse model to write.
        folder: output directory, created if missing.
        binary: True for .bin files, False for .txt.
    Returns:
        The output folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".bin" if binary else ".txt"
    write_cameras, write_images, write_points = _WRITERS[ext]
    write_cameras(model.cameras, folder / f"cameras{ext}")
    write_images(model.images, folder / f"images{ext}")
    write_points(model.points3d, folder / f"points3D{ext}")
    return folder

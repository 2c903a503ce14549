"""COLMAP's binary model files (cameras.bin, images.bin, points3D.bin): readers and writers.

The layout (little endian) follows COLMAP's `ReadCamerasBinary` / `ReadImagesBinary` /
`ReadPoints3DBinary`. Readers raise SceneError naming the file, the problem and the byte offset.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from nerf.datasets.colmap_model import CAMERA_MODEL_BY_ID, ColmapCamera, ColmapImage, ColmapPoint3D, camera_spec
from nerf.errors import SceneError


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
        spec = camera_spec(camera)
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


# (cameras, images, points3D) functions, in the order of colmap_io's file stems
READERS = (_read_cameras_binary, _read_images_binary, _read_points3d_binary)
WRITERS = (_write_cameras_binary, _write_images_binary, _write_points3d_binary)

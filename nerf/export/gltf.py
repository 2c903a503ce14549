"""Binary glTF 2.0 (.glb) of a coloured mesh or point cloud, as the specification reads it.

What a viewer needs to show baked radiance as it was rendered:
- COLOR_0 is *linear* RGB (glTF 2.0, "Meshes": "Color ... in linear space"); our colours are the
  sRGB-encoded values the photos hold, so they are decoded with the sRGB transfer function
  (IEC 61966-2-1) and stored as float32 VEC3, with no quantisation;
- a material with `KHR_materials_unlit` (listed in extensionsUsed): the colours are radiance
  already, so no light must shade them again; its pbrMetallicRoughness fallback (white base
  colour, metallic 0, roughness 1) is what viewers without the extension show, instead of the
  default metallic 1 that renders dark;
- NORMAL (unit float32 VEC3) so viewers that do shade use smooth normals, not flat faces;
- POSITION with its min/max (required), indices as UNSIGNED_INT; a point cloud is one
  primitive of mode POINTS without indices.
Buffer views start on 4-byte boundaries and both chunks are padded (JSON with spaces, BIN with
zeros), as the GLB container requires.
"""

from __future__ import annotations

import json
import struct

import numpy as np

GLB_MAGIC, GLB_VERSION = 0x46546C67, 2  # "glTF"
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942  # "JSON", "BIN\0"
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
MODE_POINTS, MODE_TRIANGLES = 0, 4
UNLIT = "KHR_materials_unlit"


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:  # [N, 3] uint8 sRGB -> [N, 3] float32 linear
    """Decode 8-bit sRGB values to linear intensities in [0, 1] (the IEC 61966-2-1 curve)."""
    c = np.asarray(colors, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:  # [N, 3] float linear -> [N, 3] uint8 sRGB
    """Encode linear intensities in [0, 1] as 8-bit sRGB (the inverse of `srgb_to_linear`)."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    srgb = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1.0 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


def glb_vertex_colors(data: bytes) -> np.ndarray | None:  # -> [V, 3] uint8 sRGB, or None
    """COLOR_0 of the first primitive of a .glb (float, or normalised unsigned byte / short),
    back as the 8-bit sRGB values a PLY holds; None when it has none. Readers such as trimesh
    drop vertex colours once a material is present, so the mesh job reads them here."""
    magic, _, _ = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC:
        return None
    json_len, _ = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20 : 20 + json_len])
    bin_start = 20 + json_len + 8
    attributes = doc["meshes"][0]["primitives"][0]["attributes"]
    if "COLOR_0" not in attributes:
        return None
    accessor = doc["accessors"][attributes["COLOR_0"]]
    view = doc["bufferViews"][accessor["bufferView"]]
    dtype = {FLOAT: "<f4", 5121: "u1", 5123: "<u2"}[accessor["componentType"]]
    width = 4 if accessor["type"] == "VEC4" else 3
    start = bin_start + view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    values = np.frombuffer(data, dtype=dtype, count=accessor["count"] * width, offset=start)
    values = values.reshape(-1, width)[:, :3].astype(np.float64)
    if dtype != "<f4":
        values /= np.iinfo(np.dtype(dtype)).max
    return linear_to_srgb(values)


def glb_bytes(
    vertices: np.ndarray,  # [V, 3] float
    normals: np.ndarray,  # [V, 3] float, unit length
    colors: np.ndarray | None = None,  # [V, 3] uint8 sRGB
    faces: np.ndarray | None = None,  # [F, 3] int; None = a point cloud
) -> bytes:
    """A .glb file holding one mesh (or point) primitive with the unlit vertex-colour material."""
    blobs, views, accessors = [], [], []

    def add(array: np.ndarray, component: int, kind: str, target: int, bounds: bool = False) -> int:
        offset = sum(len(b) for b in blobs)
        data = np.ascontiguousarray(array).tobytes()
        blobs.append(data + b"\0" * (-len(data) % 4))
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        accessor = {"bufferView": len(views) - 1, "componentType": component, "count": len(array), "type": kind}
        if bounds:
            accessor["min"], accessor["max"] = array.min(axis=0).tolist(), array.max(axis=0).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    attributes = {
        "POSITION": add(np.asarray(vertices, dtype=np.float32), FLOAT, "VEC3", ARRAY_BUFFER, bounds=True),
        "NORMAL": add(np.asarray(normals, dtype=np.float32), FLOAT, "VEC3", ARRAY_BUFFER),
    }
    if colors is not None:
        attributes["COLOR_0"] = add(srgb_to_linear(colors), FLOAT, "VEC3", ARRAY_BUFFER)
    primitive = {"attributes": attributes, "material": 0, "mode": MODE_POINTS if faces is None else MODE_TRIANGLES}
    if faces is not None:
        primitive["indices"] = add(np.asarray(faces, dtype=np.uint32).reshape(-1), UNSIGNED_INT, "SCALAR",
                                   ELEMENT_ARRAY_BUFFER)
    binary = b"".join(blobs)
    doc = {
        "asset": {"version": "2.0", "generator": "nerf-toolkit nerf.export.gltf"},
        "extensionsUsed": [UNLIT],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [primitive]}],
        "materials": [{
            "name": "baked_radiance",
            "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                     "roughnessFactor": 1.0},
            "extensions": {UNLIT: {}},
        }],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", GLB_MAGIC, GLB_VERSION, total),
        struct.pack("<II", len(text), CHUNK_JSON), text,
        struct.pack("<II", len(binary), CHUNK_BIN), binary,
    ])

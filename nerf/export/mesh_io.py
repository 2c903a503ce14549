"""Mesh and point-cloud files with per-vertex colours and normals: PLY, OBJ and GLB.

Every writer is atomic: the bytes go to a hidden temporary file beside the target, which is then
renamed over it (`os.replace`), so a crash never leaves a half-written mesh under the real name.

Formats (colours are the 8-bit sRGB values the renders show; normals are unit vectors)
    .ply  binary little-endian; vertices `float x, y, z` + `float nx, ny, nz` + `uchar red,
          green, blue` (the property names Blender, MeshLab and Open3D read); faces
          `list uchar int`.
    .obj  text; vertex colours as the widespread "v x y z r g b" extension with r, g, b in [0, 1]
          (read by MeshLab, Blender, Open3D and trimesh), "vn" normals and 1-based
          "f a//a b//b c//c" faces.
    .glb  binary glTF 2.0 (nerf/export/gltf.py): linear COLOR_0, NORMAL, an unlit material.
Meshes get area-weighted vertex normals; point clouds carry the normals their caller gives.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import trimesh

from nerf.atomic import write_bytes_atomic
from nerf.errors import ExportError
from nerf.export.gltf import glb_bytes, glb_vertex_colors

MESH_FORMATS = (".ply", ".obj", ".glb")


def ensure_folder(folder: str | Path) -> Path:
    """Create `folder` (and parents) if needed; ExportError naming it when that is impossible."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ExportError(f"{folder}: cannot create this folder: {parent} is a file")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{folder}: cannot create this folder ({exc.strerror or exc})") from exc
    return folder


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename; ExportError if impossible."""
    path = Path(path)
    ensure_folder(path.parent)
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return path


def vertex_colors_uint8(mesh: trimesh.Trimesh) -> np.ndarray | None:  # [V, 3] uint8 or None
    """The mesh's per-vertex RGB colours, or None when it has none."""
    if mesh.visual.kind != "vertex":
        return None
    return np.asarray(mesh.visual.vertex_colors, dtype=np.uint8)[:, :3]


def colors_to_uint8(colors: np.ndarray) -> np.ndarray:  # [P, 3] float [0, 1] or uint8 -> uint8
    """Quantise colours to uint8 (floats are taken as [0, 1] and rounded)."""
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    return np.round(np.clip(colors.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def unit_normals(normals: np.ndarray) -> np.ndarray:  # [V, 3] -> [V, 3] float32 unit
    """Normals scaled to unit length; a zero or non-finite normal becomes +z (glTF needs unit)."""
    n = np.nan_to_num(np.asarray(normals, dtype=np.float64))
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 0.0, 1.0]).astype(np.float32)


def ply_bytes(
    vertices: np.ndarray,  # [V, 3] float
    colors: np.ndarray | None = None,  # [V, 3] uint8
    faces: np.ndarray | None = None,  # [F, 3] int
    normals: np.ndarray | None = None,  # [V, 3] float
) -> bytes:
    """A binary little-endian PLY file holding points or a triangle mesh."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(len(vertices), dtype=fields)
    for i, axis in enumerate("xyz"):
        vert[axis] = vertices[:, i]
        if normals is not None:
            vert[f"n{axis}"] = normals[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vert[channel] = colors[:, i]
    header = ["ply", "format binary_little_endian 1.0", "comment written by nerf.export.mesh_io",
              f"element vertex {len(vertices)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {name}" for name, t in fields]
    body = [vert.tobytes()]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        face = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        face["n"] = 3
        face["idx"] = faces
        body.append(face.tobytes())
    header.append("end_header")
    return ("\n".join(header) + "\n").encode("ascii") + b"".join(body)


def obj_bytes(
    vertices: np.ndarray,  # [V, 3] float
    colors: np.ndarray | None,  # [V, 3] uint8
    faces: np.ndarray | None,  # [F, 3] int; None = points only
    normals: np.ndarray | None = None,  # [V, 3] float
) -> bytes:
    """A Wavefront OBJ file with optional "v x y z r g b" vertex colours and "vn" normals."""
    out = io.StringIO()
    out.write("# written by nerf.export.mesh_io\n")
    if colors is None:
        np.savetxt(out, vertices, fmt="v %.7g %.7g %.7g")
    else:
        np.savetxt(out, np.hstack([vertices, colors / 255.0]), fmt="v %.7g %.7g %.7g %.6f %.6f %.6f")
    if normals is not None:
        np.savetxt(out, normals, fmt="vn %.6f %.6f %.6f")
    if faces is not None:
        fmt = "f %d//%d %d//%d %d//%d" if normals is not None else "f %d %d %d"
        idx = faces + 1
        np.savetxt(out, np.repeat(idx, 2, axis=1) if normals is not None else idx, fmt=fmt)
    return out.getvalue().encode("ascii")


def encode(
    path: Path,
    vertices: np.ndarray,  # [V, 3] float32
    colors: np.ndarray | None,  # [V, 3] uint8 sRGB
    faces: np.ndarray | None,  # [F, 3] int64; None = a point cloud
    normals: np.ndarray,  # [V, 3] unit
) -> bytes:
    """The bytes of `path`'s format (its suffix, one of MESH_FORMATS)."""
    suffix = path.suffix.lower()
    if len(vertices) == 0:
        raise ExportError(f"{path}: nothing to write (no vertices)")
    if suffix == ".ply":
        return ply_bytes(vertices, colors, faces, normals)
    if suffix == ".obj":
        return obj_bytes(vertices, colors, faces, normals)
    if suffix == ".glb":
        return glb_bytes(vertices, normals, colors, faces)
    raise ExportError(f"{path}: unknown mesh format {suffix!r}; expected one of {MESH_FORMATS}")


def save_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a triangle mesh (with its vertex colours, if any, and vertex normals) as .ply, .obj
    or .glb.

    Args:
        mesh: the mesh; colours are taken from `mesh.visual.vertex_colors` when present.
        path: target file; its suffix picks the format (see MESH_FORMATS).

    Returns:
        The written path.
    """
    path = Path(path)
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    normals = unit_normals(mesh.vertex_normals) if len(faces) else unit_normals(np.zeros_like(vertices))
    return atomic_write_bytes(path, encode(path, vertices, vertex_colors_uint8(mesh), faces, normals))


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read a .ply, .obj or .glb mesh as one trimesh.Trimesh (vertex order kept, not merged)."""
    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise ExportError(f"{path}: unknown mesh format {path.suffix!r}; expected one of {MESH_FORMATS}")
    if not path.is_file():
        raise ExportError(f"{path}: mesh file not found")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise ExportError(f"{path}: cannot read mesh ({exc})") from exc
    if not isinstance(mesh, trimesh.Trimesh):
        raise ExportError(f"{path}: holds no triangle mesh")
    if path.suffix.lower() == ".glb":
        colors = glb_vertex_colors(path.read_bytes())
        if colors is not None and len(colors) == len(mesh.vertices):
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colors)
    return mesh


def save_point_cloud_ply(
    path: str | Path,
    points: np.ndarray,  # [P, 3] float
    colors: np.ndarray | None = None,  # [P, 3] uint8 or float in [0, 1]
    normals: np.ndarray | None = None,  # [P, 3] float
) -> Path:
    """Write a coloured point cloud (with normals, when given) as .ply, .obj or .glb."""
    path = Path(path)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ExportError(f"{path}: points must be [P, 3], got {points.shape}")
    if colors is not None:
        colors = colors_to_uint8(colors)
        if colors.shape != points.shape:
            raise ExportError(f"{path}: colors must be [{len(points)}, 3], got {colors.shape}")
    if normals is not None and np.shape(normals) != points.shape:
        raise ExportError(f"{path}: normals must be [{len(points)}, 3], got {np.shape(normals)}")
    if normals is None and path.suffix.lower() == ".ply":
        return atomic_write_bytes(path, ply_bytes(points, colors))
    normals = unit_normals(np.zeros_like(points) if normals is None else normals)
    return atomic_write_bytes(path, encode(path, points, colors, None, normals))

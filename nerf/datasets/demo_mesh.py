"""The demo temple's ground-truth surface as a triangle mesh (the union of its solids).

Flat faces are Delaunay-triangulated grids of spacing `_MESH_SPACING`, with the discs where the
columns stand cut out along the columns' own section polygons, so tubes and faces share their
rim vertices and the mesh is watertight. Tessellation error (largest distance of a face from
the analytic surface): icosphere chord sag about 2e-4 r (6e-5 for the r = 0.32 sphere), tube
chord sag 7.5e-6; flat faces are exact.
"""

import functools

import numpy as np
import trimesh
from scipy.spatial import Delaunay

from nerf.datasets.demo_geometry import Primitive, albedo_at, scene_primitives

_CYLINDER_SECTIONS = 256  # chord sag r * (1 - cos(pi / 256)) = 7.5e-6 for r = 0.1
_ICOSPHERE_SUBDIVISIONS = 5  # chord sag about 2e-4 * r
_MESH_SPACING = 0.02  # edge length of the flat-face grids and tube rows (vertex-colour resolution)


def _ring_xy(cx: float, cy: float, r: float) -> np.ndarray:  # -> [n, 2]
    """The cylinder sections' corner points; shared by tubes and the holes they leave in faces."""
    angle = np.arange(_CYLINDER_SECTIONS) * (2 * np.pi / _CYLINDER_SECTIONS)
    return np.stack([cx + r * np.cos(angle), cy + r * np.sin(angle)], 1)


def _box_face(
    lo: np.ndarray,  # [3] box corner
    hi: np.ndarray,  # [3] opposite corner
    axis: int,
    sign: int,
    holes: list[tuple[float, float, float]],  # (centre u, centre v, radius) in the face's axes
) -> tuple[np.ndarray, np.ndarray]:  # vertices [V, 3], outward triangles [F, 3]
    """Triangles of the box face normal to axis on the side sign (a grid, minus the discs where
    columns stand on it)."""
    u, v = [k for k in range(3) if k != axis]
    us, vs = (np.linspace(lo[k], hi[k], int(np.ceil((hi[k] - lo[k]) / _MESH_SPACING)) + 1)
              for k in (u, v))
    uv = np.stack(np.meshgrid(us, vs, indexing="ij"), -1).reshape(-1, 2)
    for cx, cy, r in holes:  # keep grid points clear of the hole rims (no slivers)
        uv = uv[np.linalg.norm(uv - [cx, cy], axis=1) > r + 0.6 * _MESH_SPACING]
    rings = [_ring_xy(*h) for h in holes]
    ring_id = np.concatenate([np.full(len(uv), -1)]
                             + [np.full(len(r), k) for k, r in enumerate(rings)])
    uv = np.concatenate([uv, *rings])
    tri = Delaunay(uv).simplices
    # a triangle with all corners on one rim lies inside that hole (the rim polygon is convex)
    rim = ring_id[tri]
    tri = tri[~((rim[:, 0] >= 0) & (rim[:, 0] == rim[:, 1]) & (rim[:, 1] == rim[:, 2]))]
    xyz = np.empty((len(uv), 3))
    xyz[:, axis], xyz[:, u], xyz[:, v] = (hi if sign > 0 else lo)[axis], uv[:, 0], uv[:, 1]
    normal = np.cross(xyz[tri[:, 1]] - xyz[tri[:, 0]], xyz[tri[:, 2]] - xyz[tri[:, 0]])
    flip = normal[:, axis] * sign < 0
    tri[flip] = tri[flip][:, ::-1]
    return xyz, tri


def _primitive_surface(
    p: Primitive, prims: tuple[Primitive, ...]
) -> tuple[np.ndarray, np.ndarray]:  # vertices [V, 3], triangles [F, 3]
    """Vertices [V, 3] and outward triangles [F, 3] of the visible part of one primitive."""
    c, h = np.array(p.center), np.array(p.half_size)
    if p.kind == "sphere":
        m = trimesh.creation.icosphere(subdivisions=_ICOSPHERE_SUBDIVISIONS, radius=h[0])
        return m.vertices + c, m.faces
    if p.kind == "cylinder":  # a tube; both caps are covered by the base and the roof
        ring = _ring_xy(c[0], c[1], h[0])
        n_z = int(np.ceil(2 * h[2] / _MESH_SPACING))
        z = np.linspace(c[2] - h[2], c[2] + h[2], n_z + 1)
        xyz = np.concatenate([np.column_stack([ring, np.full(len(ring), zk)]) for zk in z])
        k, i = np.meshgrid(np.arange(n_z), np.arange(len(ring)), indexing="ij")
        a, b = k * len(ring) + i, k * len(ring) + (i + 1) % len(ring)
        up = len(ring)  # the same corner one row higher
        tri = np.concatenate([np.stack([a, b, b + up], -1), np.stack([a, b + up, a + up], -1)])
        return xyz, tri.reshape(-1, 3)
    lo, hi = c - h, c + h
    verts, faces, offset = [], [], 0
    for axis in range(3):
        for sign, plane in ((-1, lo[axis]), (1, hi[axis])):
            holes = [(q.center[0], q.center[1], q.half_size[0]) for q in prims
                     if q.kind == "cylinder" and axis == 2
                     and np.isclose(q.center[2] - sign * q.half_size[2], plane)]
            xyz, tri = _box_face(lo, hi, axis, sign, holes)
            verts.append(xyz)
            faces.append(tri + offset)
            offset += len(xyz)
    return np.concatenate(verts), np.concatenate(faces)


@functools.cache
def _welded_surface() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices [V, 3], faces [F, 3] and RGBA uint8 colours [V, 4] of the ground-truth mesh."""
    prims = scene_primitives()
    verts, faces, offset = [], [], 0
    for p in prims:
        xyz, tri = _primitive_surface(p, prims)
        verts.append(xyz)
        faces.append(tri + offset)
        offset += len(xyz)
    mesh = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=True)
    rgb = np.round(albedo_at(mesh.vertices) * 255).astype(np.uint8)
    arrays = (mesh.vertices.copy(), mesh.faces.copy(),
              np.column_stack([rgb, np.full(len(rgb), 255, np.uint8)]))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def ground_truth_mesh() -> trimesh.Trimesh:
    """The temple's visible surfaces as one watertight triangle mesh with albedo vertex colours."""
    vertices, faces, colours = _welded_surface()
    return trimesh.Trimesh(vertices.copy(), faces.copy(), vertex_colors=colours.copy(),
                           process=False)

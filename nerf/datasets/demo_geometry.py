"""Geometry, textures and shading of the demo temple, ray traced exactly in numpy.

The temple is made of analytic solids ("primitives") in world units with z up (as in Blender):
a base slab (box), four z-aligned columns (finite cylinders standing between the base and the
roof), a roof slab (box), a specular sphere resting on the base between the columns and a
small sphere (finial) resting on the roof. Everything lies in [-0.85, 0.85]^2 x [-0.75, 0.75].

Shading is linear RGB with a fixed directional light `LIGHT_DIR` (unit, pointing to the light):
    c = albedo * (AMBIENT + DIFFUSE * max(0, n.l)) + k_s * max(0, n.h)^SHININESS, clipped to [0, 1]
with h = normalise(l + v) and v the unit vector towards the viewer. Only the central sphere has
k_s > 0, so every other colour is view-independent. No shadows. Albedos are procedural
checkers and stripes of 8-16 cells across an object.

t always means a distance along a unit direction. Rays start outside every primitive; the hit
is the first surface crossed.
"""

import functools
from dataclasses import dataclass

import numpy as np

LIGHT_DIR = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])
AMBIENT = 0.3  # fraction of the albedo seen with no direct light
DIFFUSE = 0.7  # Lambert weight of the directional light
SHININESS = 40.0  # Blinn-Phong exponent of the specular sphere
_T_MIN = 1e-9  # hits closer than this to the ray origin are ignored


@dataclass(frozen=True)
class Primitive:
    """One analytic solid of the demo scene.

    kind "box": half_size is the half extents; "cylinder": z-aligned, half_size = (r, r, h / 2);
    "sphere": half_size = (r, r, r). texture is (pattern, parameter), see `_albedo`.
    """

    name: str
    kind: str
    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    texture: tuple[str, float]
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    specular: float = 0.0

    def to_json(self) -> dict:
        """The primitive as scene.json describes it (values rounded to 12 decimals)."""
        c, h = np.array(self.center), np.array(self.half_size)

        def r(x):
            return np.round(x, 12).tolist()

        geometry = {
            "box": lambda: {"min": r(c - h), "max": r(c + h)},
            "cylinder": lambda: {"axis": "z", "center_xy": r(c[:2]), "radius": r(h[0]),
                                 "z_min": r(c[2] - h[2]), "z_max": r(c[2] + h[2])},
            "sphere": lambda: {"center": r(c), "radius": r(h[0])},
        }[self.kind]()
        return {"name": self.name, "type": self.kind, **geometry,
                "texture": {"pattern": self.texture[0], "parameter": self.texture[1],
                            "colors": [list(col) for col in self.colors]},
                "specular": self.specular}


@functools.cache
def scene_primitives() -> tuple[Primitive, ...]:
    """The solids of the temple, in a fixed order (their index is the primitive id)."""
    sand = ((0.85, 0.77, 0.58), (0.52, 0.42, 0.28))
    marble = ((0.92, 0.91, 0.88), (0.45, 0.5, 0.68))
    columns = tuple(
        Primitive(f"column_{k}", "cylinder", (x, y, -0.15), (0.1, 0.1, 0.45),
                  ("angular_stripes", 8), marble)
        for k, (x, y) in enumerate([(-0.55, -0.55), (0.55, -0.55), (0.55, 0.55), (-0.55, 0.55)])
    )
    return (
        Primitive("base", "box", (0.0, 0.0, -0.675), (0.85, 0.85, 0.075),
                  ("checker", 0.10625), sand),
        *columns,
        Primitive("roof", "box", (0.0, 0.0, 0.375), (0.75, 0.75, 0.075),
                  ("diagonal_stripes", 0.25), ((0.78, 0.3, 0.18), (0.93, 0.64, 0.42))),
        Primitive("sphere", "sphere", (0.0, 0.0, -0.28), (0.32, 0.32, 0.32),
                  ("latlong_checker", 8), ((0.8, 0.14, 0.1), (0.95, 0.8, 0.3)), specular=0.6),
        Primitive("finial", "sphere", (0.0, 0.0, 0.6), (0.15, 0.15, 0.15),
                  ("latitude_bands", 6), ((0.18, 0.58, 0.3), (0.2, 0.3, 0.72))),
    )


def scene_aabb() -> np.ndarray:
    """The axis-aligned box around every primitive, [2, 3] (min row, max row)."""
    prims = scene_primitives()
    c = np.array([p.center for p in prims])
    h = np.array([p.half_size for p in prims])
    return np.stack([(c - h).min(0), (c + h).max(0)])


def _intersect(p: Primitive, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Distance t to the first crossing of one primitive's surface, np.inf on a miss. [N]

    o, d: [3, N] origins and unit directions, one row per axis (row-wise arithmetic is several
    times faster in numpy than reductions over a trailing axis of length 3).
    """
    q = o - np.array(p.center)[:, None]  # [3, N]
    h = p.half_size
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if p.kind == "box":  # slab test
            near, far = np.full(q.shape[1], -np.inf), np.full(q.shape[1], np.inf)
            for k in range(3):
                inv = 1.0 / np.where(d[k] == 0.0, 1e-300, d[k])
                t1, t2 = (-h[k] - q[k]) * inv, (h[k] - q[k]) * inv
                near = np.maximum(near, np.minimum(t1, t2))
                far = np.minimum(far, np.maximum(t1, t2))
            t = np.where(near > _T_MIN, near, far)
            return np.where((near <= far) & (t > _T_MIN), t, np.inf)
        if p.kind == "sphere":
            b = q[0] * d[0] + q[1] * d[1] + q[2] * d[2]
            disc = b * b - (q[0] ** 2 + q[1] ** 2 + q[2] ** 2 - h[0] ** 2)
            root = np.sqrt(np.maximum(disc, 0.0))
            t = np.where(-b - root > _T_MIN, -b - root, -b + root)
            return np.where((disc >= 0.0) & (t > _T_MIN), t, np.inf)
        a = d[0] ** 2 + d[1] ** 2  # cylinder: side (entry root) and both caps
        b = q[0] * d[0] + q[1] * d[1]
        disc = b * b - a * (q[0] ** 2 + q[1] ** 2 - h[0] ** 2)
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        ok = (a > 0) & (disc >= 0) & (t_side > _T_MIN) & (np.abs(q[2] + t_side * d[2]) <= h[2])
        best = np.where(ok, t_side, np.inf)
        for z in (-h[2], h[2]):
            t_cap = (z - q[2]) / d[2]
            x, y = q[0] + t_cap * d[0], q[1] + t_cap * d[1]
            ok = (d[2] != 0) & (t_cap > _T_MIN) & (x * x + y * y <= h[0] ** 2)
            best = np.minimum(best, np.where(ok, t_cap, np.inf))
        return best


def _surface_frame(p: Primitive, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned distance [P] of points x [P, 3] to a primitive's surface, and the outward normal
    [P, 3] of the surface patch nearest to them."""
    c, h = np.array(p.center), np.array(p.half_size)
    q = x - c
    if p.kind == "sphere":
        norm = np.linalg.norm(q, axis=1)
        return np.abs(norm - h[0]), q / np.maximum(norm, 1e-300)[:, None]
    if p.kind == "box":
        excess = np.abs(q) - h  # [P, 3] per-axis signed distance to the slabs
    else:
        radial = np.linalg.norm(q[:, :2], axis=1)
        excess = np.stack([radial - h[0], np.abs(q[:, 2]) - h[2]], 1)
    sdf = np.minimum(excess.max(1), 0.0) + np.linalg.norm(np.maximum(excess, 0.0), axis=1)
    axis = excess.argmax(1)
    normal = np.zeros_like(q)
    if p.kind == "box":
        normal[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
    else:
        side = axis == 0
        normal[side, :2] = q[side, :2] / np.maximum(radial[side], 1e-300)[:, None]
        normal[~side, 2] = np.sign(q[~side, 2])
    return np.abs(sdf), normal


def _albedo(p: Primitive, x: np.ndarray) -> np.ndarray:
    """A primitive's procedural albedo at points x [P, 3] on its surface. [P, 3]

    The texture parameter k means, per pattern: "checker": 3D checker of cell size k in world
    units, shifted by half a cell; "diagonal_stripes": stripes of width k across x + y;
    "angular_stripes": k stripes around the z axis; "latlong_checker": k cells in longitude by
    3k/4 in latitude; "latitude_bands": k bands from pole to pole. Cells alternate colors[0],
    colors[1].
    """
    q = x - np.array(p.center)
    pattern, k = p.texture
    azimuth = (np.arctan2(q[:, 1], q[:, 0]) + np.pi) / (2 * np.pi)  # [0, 1]
    cos_polar = q[:, 2] / np.maximum(np.linalg.norm(q, axis=1), 1e-300)
    polar = np.arccos(np.clip(cos_polar, -1.0, 1.0)) / np.pi  # [0, 1] from +z to -z
    cells = {
        # the half-cell shift keeps every box face off a cell boundary
        "checker": lambda: np.floor(x / k + 0.5).sum(1),
        "diagonal_stripes": lambda: np.floor((x[:, 0] + x[:, 1]) / k),
        "angular_stripes": lambda: np.floor(azimuth * k),
        "latlong_checker": lambda: np.floor(azimuth * k) + np.floor(polar * k * 0.75),
        "latitude_bands": lambda: np.floor(polar * k),
    }[pattern]()
    return np.array(p.colors)[cells.astype(np.int64) & 1]


def albedo_at(points: np.ndarray) -> np.ndarray:  # points [P, 3] -> [P, 3]
    """Ground-truth albedo (linear RGB in [0, 1]) at surface points, from the nearest primitive.

    Args:
        points: [P, 3] world points on (or near) the scene's surfaces.
    Returns:
        [P, 3] float64 albedo of the primitive whose surface is nearest (first one on ties).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    prims = scene_primitives()
    nearest = np.stack([_surface_frame(p, points)[0] for p in prims]).argmin(0)
    out = np.zeros_like(points)
    for i, p in enumerate(prims):
        sel = nearest == i
        out[sel] = _albedo(p, points[sel])
    return out


def trace_rays(
    origins: np.ndarray,  # [N, 3]
    directions: np.ndarray,  # [N, 3] unit
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # t [N], prim id [N], rgb [N, 3]
    """First hit of each ray with the temple and its shaded colour.

    Args:
        origins: [N, 3] ray origins outside every primitive.
        directions: [N, 3] unit directions.
    Returns:
        t [N] (np.inf on a miss), primitive id [N] (-1 on a miss), rgb [N, 3] (0 on a miss).
    """
    origins = np.asarray(origins, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    if origins.ndim != 2 or origins.shape[1] != 3 or directions.shape != origins.shape:
        raise ValueError(f"trace_rays: origins {origins.shape} and directions {directions.shape} "
                         "must both be [N, 3]")
    prims = scene_primitives()
    t = np.full(len(origins), np.inf)
    ids = np.full(len(origins), -1)
    aabb = scene_aabb()  # only rays that cross the scene's box are traced further
    box = Primitive("aabb", "box", tuple(aabb.mean(0)), tuple(np.ptp(aabb, 0) / 2), ("none", 0.0),
                    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    rows_o, rows_d = np.ascontiguousarray(origins.T), np.ascontiguousarray(directions.T)
    live = np.flatnonzero(np.isfinite(_intersect(box, rows_o, rows_d)))
    o, d = rows_o[:, live], rows_d[:, live]
    t_live, ids_live = np.full(len(live), np.inf), np.full(len(live), -1)
    for i, p in enumerate(prims):
        t_p = _intersect(p, o, d)
        closer = t_p < t_live
        t_live[closer], ids_live[closer] = t_p[closer], i
    t[live], ids[live] = t_live, ids_live
    rgb = np.zeros((len(origins), 3))
    for i, p in enumerate(prims):
        sel = np.flatnonzero(ids == i)
        x = origins[sel] + t[sel, None] * directions[sel]
        n = _surface_frame(p, x)[1]
        n_dot_l = np.maximum(n @ LIGHT_DIR, 0.0)
        rgb[sel] = _albedo(p, x) * (AMBIENT + DIFFUSE * n_dot_l)[:, None]
        if p.specular > 0:
            half = LIGHT_DIR - directions[sel]
            half /= np.linalg.norm(half, axis=1, keepdims=True)
            spec = np.maximum((n * half).sum(1), 0.0) ** SHININESS * (n_dot_l > 0)
            rgb[sel] += p.specular * spec[:, None]
    return t, ids, np.clip(rgb, 0.0, 1.0)

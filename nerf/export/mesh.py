"""Coloured triangle meshes from a density field: lattice, marching cubes, clean-up, colours.

Vocabulary
    density   sigma >= 0 in 1 / world unit, as in the compositing equation; `density_fn(points
              [P, 3]) -> sigma [P]` is any callable (a trained field, an analytic test shape).
    lattice   R x R x R sample points covering the box corners included, indexed [i, j, k] ->
              (x, y, z); spacing = box extent / (R - 1) per axis ("voxel size").
    box       the scene `aabb [2, 3]`, optionally intersected with the crop box of MeshConfig and
              (by the mesh job) with the occupancy grid's occupied box, so the lattice's voxels
              cover the object, not the empty margin of the scene box.
    frame     everything is computed in the normalised frame of the scene; `transform` (the
              scene's similarity, original -> normalised) is inverted at the end so the written
              mesh sits where the photos were taken.

Choices
    Marching cubes is scikit-image's Lewiner implementation. With density high inside,
    `gradient_direction="ascent"` gives counter-clockwise faces seen from outside, i.e. face
    normals point from high to low density (checked by the sphere test). The lattice is padded
    with one layer of its minimum density so that surfaces cut by the box are closed by caps; cap
    vertices are clamped onto the box faces. Objects cut by the crop box are therefore watertight.
    Filling: a radiance field never sees the inside of a solid, so its density there is
    arbitrary and often low; meshed as it is, a solid comes out with inner walls around hollow
    pockets. Two fills run before marching cubes, each setting low-density lattice points to the
    maximum density. `fill_cavities` fills every empty region (density <= level) that is not
    6-connected to the lattice border (scipy's binary_fill_holes); it needs nothing but the
    lattice, but trained fields have porous shells at the level, so their inner pockets connect
    to the outside and it misses them (on the demo temple half of the mesh's area was such
    inner walls, 1-10 voxels under the true surface). `fill_unseen` (the mesh job, which has
    the training cameras) fills the *sealed pockets* that no camera saw: lattice points with
    0 < density <= level that a ball of `seal_radius` (a fraction of the lattice side, ~8
    voxels at 256) cannot reach from outside the lattice through empty space, and that no
    training camera saw empty at least `seen_margin_voxels` in front of its rendered surface
    (`nerf.export.visibility`). Each test alone fails somewhere: visibility alone fills space no
    camera saw under or behind an object (on the demo temple captured from above only, the full
    Chamfer-L1 went from 0.97% to 1.39% of the diagonal), the ball alone fills every real
    concavity narrower than itself. Together, on the demo temple, the full Chamfer-L1 went from
    0.71% to 0.49% of the diagonal when every surface is seen and from 0.97% to 0.87% when the
    underside is not (docs/DESIGN.md has the measurements).
    Zero density (the occupancy grid's empty cells, free by the renderer's own definition) is
    never filled. The ball is approximated by alternating 6- and 26-neighbour erosions.
    Vertex colours: the field is queried a little outside the surface (`color_offset_voxels`
    along the outward normal) looking inwards, averaged over directions spread in a cone around
    the inward normal, so view-dependent effects average out instead of baking one view in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import trimesh
from scipy.ndimage import (binary_dilation, binary_erosion, binary_fill_holes, binary_propagation,
                           generate_binary_structure)
from skimage.measure import marching_cubes
from torch import Tensor

from nerf.errors import ConfigError, ExportError
from nerf.export.mesh_cleanup import decimate, remove_components, smooth_taubin

DensityFn = Callable[[Tensor], Tensor]  # points [P, 3] -> sigma [P]
OccupiedFn = Callable[[Tensor], Tensor]  # points [P, 3] -> bool [P] (False = known empty)
ColorFn = Callable[[Tensor, Tensor], Tensor]  # points [P, 3], unit directions [P, 3] -> rgb [P, 3]
SeenEmptyFn = Callable[[Tensor, float], Tensor]  # points [P, 3], margin -> bool [P]: a camera saw it empty

DEFAULT_MAX_LATTICE_BYTES = 4 << 30  # 4 GiB: resolution ~810 fits
LATTICE_DTYPE_BYTES = 4  # float32 lattice and its padded float32 copy handed to marching cubes
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))  # spreads cone directions evenly (Fibonacci)
ISO_RULES = ("auto", "voxel")  # named levels: auto_iso_level, nerf.jobs.mesh.rendered_surface_level


@dataclass(frozen=True)
class MeshConfig:
    """How a density field becomes a mesh (defaults suit a 360-degree object scene)."""

    resolution: int = 256  # lattice points per axis over the (cropped) box
    iso_level: float | str = "auto"  # number | voxel: ln 2 / voxel size | auto: a run's rendered surface
    chunk: int = 1 << 18  # points per density_fn / color_fn call (bounds peak memory)
    crop_min: tuple[float, float, float] | None = None  # crop box corner, normalised frame; None = aabb
    crop_max: tuple[float, float, float] | None = None  # opposite crop box corner; None = aabb
    crop_to_occupied: bool = True  # shrink the box to the occupancy grid's occupied cells (finer voxels)
    fill_cavities: bool = True  # fill empty pockets enclosed by matter (no inner shells)
    fill_unseen: bool = True  # also fill sealed pockets no training camera saw empty (mesh job)
    seal_radius: float = 0.03  # ball that cannot enter a sealed pocket, fraction of the lattice side
    seen_margin_voxels: float = 1.0  # space counts as seen empty this far in front of a rendered surface
    seen_views: int = 48  # training views whose depth maps fill_unseen renders, evenly spaced (0 = all)
    min_component_faces: int = 0  # drop connected components with fewer faces (0 = keep all)
    keep_largest: int = 0  # then keep only the N largest components (0 = keep all)
    decimate_faces: int = 0  # quadric decimation to this face budget with open3d (0 = off)
    smooth_iterations: int = 0  # Taubin smoothing iterations with open3d (0 = off)
    color_directions: int = 8  # viewing directions averaged per vertex colour
    color_cone_deg: float = 30.0  # half-angle of their cone around the inward normal
    color_offset_voxels: float = 1.0  # colours are read this many voxels outside the surface
    max_lattice_bytes: int = DEFAULT_MAX_LATTICE_BYTES  # refuse lattices needing more memory

    def __post_init__(self) -> None:
        if self.resolution < 3:
            raise ConfigError(f"mesh resolution must be >= 3, got {self.resolution}")
        if isinstance(self.iso_level, str) and self.iso_level not in ISO_RULES:
            try:  # config files give numbers as text
                object.__setattr__(self, "iso_level", float(self.iso_level))
            except ValueError:
                msg = f"mesh iso_level must be a number, 'auto' or 'voxel', got {self.iso_level!r}"
                raise ConfigError(msg) from None
        if self.chunk < 1 or self.color_directions < 1:
            raise ConfigError("mesh chunk and color_directions must be >= 1")
        if (self.crop_min is None) != (self.crop_max is None):
            raise ConfigError("mesh crop box needs both crop_min and crop_max")
        if not 0.0 <= self.seal_radius < 0.5 or self.seen_margin_voxels < 0 or self.seen_views < 0:
            raise ConfigError("mesh seal_radius must be in [0, 0.5), seen_margin_voxels and seen_views >= 0")
        if min(self.min_component_faces, self.keep_largest, self.decimate_faces, self.smooth_iterations) < 0:
            raise ConfigError("mesh clean-up counts must be >= 0 (0 turns a step off)")


@dataclass(frozen=True)
class MeshStats:
    """What extract_mesh produced."""

    n_vertices: int
    n_faces: int
    n_components: int  # connected components straight out of marching cubes
    components_removed: int
    cavity_voxels: int  # enclosed empty lattice points filled before marching cubes
    unseen_voxels: int  # further sealed low-density lattice points filled as no camera saw them empty
    watertight: bool  # trimesh's test: every edge shared by exactly two faces
    iso_level: float
    density_range: tuple[float, float]  # (min, max) over the lattice


def auto_iso_level(voxel_size: float) -> float:
    """The density at which a slab one voxel thick is half opaque.

    The opacity of a segment of length delta is alpha = 1 - exp(-sigma delta); alpha = 0.5 gives
    sigma = ln 2 / delta. Thinner voxels need denser matter to look solid, so the level follows
    the lattice resolution instead of being one magic number for every scene scale.

    Args:
        voxel_size: lattice spacing in world units.

    Returns:
        The iso-level sigma in 1 / world unit.
    """
    if voxel_size <= 0:
        raise ExportError(f"auto_iso_level: voxel size must be positive, got {voxel_size}")
    return math.log(2.0) / voxel_size


def lattice_bytes(resolution: int) -> int:
    """Memory of an R^3 float32 lattice plus its padded copy for marching cubes."""
    return LATTICE_DTYPE_BYTES * (resolution**3 + (resolution + 2) ** 3)


def largest_fitting_resolution(max_bytes: int) -> int:
    """The largest lattice resolution whose lattice_bytes fit in `max_bytes`."""
    r = int((max_bytes / (2 * LATTICE_DTYPE_BYTES)) ** (1.0 / 3.0)) + 1
    while r > 0 and lattice_bytes(r) > max_bytes:
        r -= 1
    return r


def require_lattice_fits(resolution: int, max_lattice_bytes: int) -> None:
    """Raise ExportError, suggesting a resolution that fits, when the lattice is over budget."""
    if lattice_bytes(resolution) > max_lattice_bytes:
        fit = largest_fitting_resolution(max_lattice_bytes)
        raise ExportError(
            f"mesh resolution {resolution} needs {lattice_bytes(resolution) / 2**30:.2f} GiB for the "
            f"density lattice, over the budget of {max_lattice_bytes / 2**30:.2f} GiB; use resolution "
            f"{fit} or less (or raise max_lattice_bytes)"
        )


def density_lattice(
    density_fn: DensityFn,
    aabb: Tensor,  # [2, 3] box (min row, max row)
    resolution: int,
    chunk: int = 1 << 18,
    occupied_fn: OccupiedFn | None = None,
    device: torch.device | str = "cpu",
    max_lattice_bytes: int = DEFAULT_MAX_LATTICE_BYTES,
) -> Tensor:  # [R, R, R] float32 on the CPU, indexed [i, j, k] -> (x, y, z)
    """Sample `density_fn` on the lattice spanning `aabb`, `chunk` points at a time.

    Args:
        density_fn: points [P, 3] on `device` -> sigma [P].
        aabb: [2, 3] lattice box; its corners are lattice points.
        resolution: points per axis.
        chunk: points per call.
        occupied_fn: optional points [P, 3] -> bool [P]; where False the density is 0 and
            `density_fn` is not called (e.g. the occupancy grid of training).
        device: where the points are built and the callables run.
        max_lattice_bytes: memory budget; a lattice needing more raises ExportError.

    Returns:
        [R, R, R] float32 densities on the CPU.
    """
    require_lattice_fits(resolution, max_lattice_bytes)
    box = torch.as_tensor(aabb, dtype=torch.float32, device=device)
    if box.shape != (2, 3) or not bool((box[1] > box[0]).all()):
        raise ExportError(f"density_lattice: aabb must be [2, 3] with min < max, got {box.tolist()}")
    total = resolution**3
    grid = torch.zeros(total, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, total, chunk):
            idx = torch.arange(start, min(start + chunk, total), device=device)
            points = lattice_points(box, resolution, idx)
            values = torch.zeros(len(idx), dtype=torch.float32, device=device)
            mask = None if occupied_fn is None else occupied_fn(points).reshape(-1).bool()
            if mask is None:
                values = _call_density(density_fn, points)
            elif bool(mask.any()):
                values[mask] = _call_density(density_fn, points[mask])
            grid[start : start + len(idx)] = values.cpu()
    bad = int((~torch.isfinite(grid)).sum())
    if bad:
        raise ExportError(f"density_lattice: density_fn returned {bad} non-finite values (NaN or inf)")
    return grid.reshape(resolution, resolution, resolution)


def lattice_points(
    box: Tensor,  # [2, 3] lattice box
    resolution: int,
    flat_index: Tensor,  # [P] int64 indices into the flattened [R, R, R] lattice
) -> Tensor:  # [P, 3] on flat_index's device, box's dtype
    """Coordinates of lattice points given by flat index (i * R * R + j * R + k -> x_i, y_j, z_k)."""
    box = box.to(flat_index.device)
    ijk = torch.stack([flat_index // (resolution * resolution), (flat_index // resolution) % resolution,
                       flat_index % resolution], dim=-1)
    return box[0] + ijk.to(box.dtype) * ((box[1] - box[0]) / (resolution - 1))


def _call_density(density_fn: DensityFn, points: Tensor) -> Tensor:  # [P, 3] -> [P] float32
    sigma = density_fn(points)
    if sigma.numel() != points.shape[0]:
        raise ExportError(
            f"density_fn must return one density per point: got shape {tuple(sigma.shape)} for "
            f"{points.shape[0]} points"
        )
    return sigma.reshape(-1).float()


def mesh_box(aabb: Tensor, cfg: MeshConfig) -> np.ndarray:  # [2, 3] float64
    """The box to mesh: `aabb`, intersected with the crop box when one is set."""
    box = np.asarray(torch.as_tensor(aabb).cpu(), dtype=np.float64).reshape(2, 3)
    if cfg.crop_min is None:
        return box
    crop = np.array([cfg.crop_min, cfg.crop_max], dtype=np.float64)
    inter = np.stack([np.maximum(box[0], crop[0]), np.minimum(box[1], crop[1])])
    if not (inter[1] > inter[0]).all():
        raise ExportError(
            f"mesh crop box {crop.tolist()} does not overlap the scene box {box.tolist()} "
            "(both in the normalised frame)"
        )
    return inter


def extract_mesh(
    density_fn: DensityFn,
    aabb: Tensor,  # [2, 3]
    cfg: MeshConfig,
    color_fn: ColorFn | None = None,
    occupied_fn: OccupiedFn | None = None,
    transform: Tensor | None = None,  # [4, 4] similarity original -> normalised
    device: torch.device | str = "cpu",
    seen_empty_fn: SeenEmptyFn | None = None,
) -> tuple[trimesh.Trimesh, MeshStats]:
    """Marching cubes on the density lattice, cleaned and coloured, in the original frame.

    Args:
        density_fn: points [P, 3] -> sigma [P] (normalised frame).
        aabb: [2, 3] scene box in the normalised frame.
        cfg: resolution, iso level, crop box, clean-up and colour settings.
        color_fn: optional points [P, 3], unit directions [P, 3] -> rgb [P, 3] in [0, 1].
        occupied_fn: optional points [P, 3] -> bool [P]; False skips the density query.
        transform: the scene's similarity (original -> normalised); its inverse maps the mesh
            back. None keeps the normalised frame.
        device: where the callables run.
        seen_empty_fn: optional points [P, 3], margin -> bool [P]: whether a training camera saw
            the point empty (nerf.export.visibility); used by `cfg.fill_unseen`.

    Returns:
        The mesh (vertex colours when `color_fn` is given) and its MeshStats.
    """
    box = mesh_box(aabb, cfg)
    grid = density_lattice(
        density_fn, torch.as_tensor(box, dtype=torch.float32), cfg.resolution, cfg.chunk,
        occupied_fn, device, cfg.max_lattice_bytes,
    ).numpy()
    spacing = (box[1] - box[0]) / (cfg.resolution - 1)
    named = cfg.iso_level in ISO_RULES  # no renders here ("auto" is resolved by the mesh job)
    level = auto_iso_level(float(spacing.mean())) if named else float(cfg.iso_level)
    lo, hi = float(grid.min()), float(grid.max())
    if not lo < level < hi:
        side = "no lattice point is denser than" if hi <= level else "every lattice point is denser than"
        raise ExportError(
            f"mesh: empty iso-surface: {side} the iso level {level:.4g}; densities found range over "
            f"[{lo:.4g}, {hi:.4g}] on the {cfg.resolution}^3 lattice in box {box.tolist()}; "
            "choose an iso_level inside that range"
        )
    solid = grid > level
    cavities = binary_fill_holes(solid) & ~solid if cfg.fill_cavities else np.zeros_like(solid)
    unseen = np.zeros_like(solid)
    if cfg.fill_unseen and seen_empty_fn is not None:
        sealed = sealed_pockets(~solid, round(cfg.seal_radius * (cfg.resolution - 1)))
        candidates = np.flatnonzero(sealed & (grid > 0) & ~cavities)
        points = lattice_points(torch.as_tensor(box), cfg.resolution, torch.as_tensor(candidates))
        margin = cfg.seen_margin_voxels * float(spacing.mean())
        seen = seen_empty_fn(points.float().to(device), margin).reshape(-1).cpu().numpy()
        unseen.reshape(-1)[candidates[~seen]] = True
    grid = np.where(cavities | unseen, np.float32(hi), grid)
    padded = np.pad(grid, 1, mode="constant", constant_values=lo)
    verts, faces, _, _ = marching_cubes(padded, level, spacing=tuple(spacing), gradient_direction="ascent")
    verts = np.clip(verts + (box[0] - spacing), box[0], box[1])
    mesh = trimesh.Trimesh(verts, faces, process=False)

    n_components, removed, mesh = remove_components(mesh, cfg.min_component_faces, cfg.keep_largest)
    if cfg.decimate_faces and len(mesh.faces) > cfg.decimate_faces:
        mesh = decimate(mesh, cfg.decimate_faces)
    if cfg.smooth_iterations:
        mesh = smooth_taubin(mesh, cfg.smooth_iterations)
    if color_fn is not None:
        mesh.visual.vertex_colors = vertex_colors(mesh, color_fn, cfg, float(spacing.mean()), device)
    if transform is not None:
        mesh = to_original_frame(mesh, transform)
    stats = MeshStats(
        n_vertices=len(mesh.vertices), n_faces=len(mesh.faces), n_components=n_components,
        components_removed=removed, cavity_voxels=int(cavities.sum()), unseen_voxels=int(unseen.sum()),
        watertight=bool(mesh.is_watertight), iso_level=level,
        density_range=(lo, hi),
    )
    return mesh, stats


def sealed_pockets(empty: np.ndarray, radius: int) -> np.ndarray:  # [R, R, R] bool -> same
    """Empty lattice points that a ball of about `radius` voxels cannot reach from outside the
    lattice while staying inside `empty` (the complement of a morphological opening, grown only
    from the border). The ball is `radius` alternating 6- and 26-neighbour steps."""
    if radius < 1:
        return np.zeros_like(empty)
    steps = [generate_binary_structure(3, 1 if k % 2 == 0 else 3) for k in range(radius)]
    core = np.pad(empty, 1, constant_values=True)  # the outside of the lattice is empty
    for step in steps:
        core = binary_erosion(core, step, border_value=1)
    border = np.ones_like(core)  # the border layer, where the ball comes in from outside
    border[1:-1, 1:-1, 1:-1] = False
    reach = binary_propagation(core & border, mask=core)
    for step in steps:
        reach = binary_dilation(reach, step)
    return empty & ~reach[1:-1, 1:-1, 1:-1]


def vertex_colors(
    mesh: trimesh.Trimesh,
    color_fn: ColorFn,
    cfg: MeshConfig,
    voxel_size: float,
    device: torch.device | str = "cpu",
) -> np.ndarray:  # [V, 3] uint8
    """Average colour seen looking at each vertex from just outside, over a cone of directions."""
    normals = torch.tensor(np.array(mesh.vertex_normals), dtype=torch.float32, device=device)
    length = normals.norm(dim=-1, keepdim=True)
    # degenerate vertices (all adjacent faces of zero area) have no normal: look at them along +z
    fallback = torch.tensor([0.0, 0.0, 1.0], device=device).expand_as(normals)
    normals = torch.where(length > 1e-8, normals / length.clamp_min(1e-8), fallback)
    verts = torch.tensor(np.array(mesh.vertices), dtype=torch.float32, device=device)
    origins = verts + cfg.color_offset_voxels * voxel_size * normals
    k = cfg.color_directions
    per_call = max(1, cfg.chunk // k)
    out = torch.empty(len(verts), 3, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, len(verts), per_call):
            sl = slice(start, start + per_call)
            dirs = cone_directions(-normals[sl], k, math.radians(cfg.color_cone_deg))  # [n, k, 3]
            pts = origins[sl, None, :].expand_as(dirs)
            rgb = color_fn(pts.reshape(-1, 3), dirs.reshape(-1, 3))
            if rgb.shape != (pts.shape[0] * k, 3):
                raise ExportError(
                    f"color_fn must return rgb [P, 3]: got {tuple(rgb.shape)} for {pts.shape[0] * k} points"
                )
            out[sl] = rgb.float().reshape(-1, k, 3).mean(dim=1).cpu()
    return np.round(out.clamp(0.0, 1.0).numpy() * 255.0).astype(np.uint8)


def cone_directions(
    axes: Tensor,  # [N, 3] unit cone axes
    count: int,
    half_angle: float,  # radians
) -> Tensor:  # [N, count, 3] unit directions
    """`count` deterministic unit directions spread evenly (Fibonacci) in a cone around each axis."""
    if count == 1:
        return axes[:, None, :]
    k = torch.arange(count, dtype=axes.dtype, device=axes.device)
    cos_t = 1.0 - (1.0 - math.cos(half_angle)) * (k + 0.5) / count
    sin_t = torch.sqrt((1.0 - cos_t * cos_t).clamp_min(0.0))
    phi = k * GOLDEN_ANGLE
    helper = torch.zeros_like(axes)
    use_y = axes[:, 0].abs() > 0.9
    helper[:, 0] = (~use_y).to(axes.dtype)
    helper[:, 1] = use_y.to(axes.dtype)
    t1 = torch.linalg.cross(axes, helper)
    t1 = t1 / t1.norm(dim=-1, keepdim=True)
    t2 = torch.linalg.cross(axes, t1)
    local = (torch.cos(phi)[:, None] * t1[:, None, :] + torch.sin(phi)[:, None] * t2[:, None, :])
    return cos_t[None, :, None] * axes[:, None, :] + sin_t[None, :, None] * local


def to_original_frame(mesh: trimesh.Trimesh, transform: Tensor) -> trimesh.Trimesh:
    """Map a normalised-frame mesh back with the inverse of `transform [4, 4]`, keeping colours."""
    t = np.asarray(torch.as_tensor(transform).cpu(), dtype=np.float64)
    if t.shape != (4, 4) or not np.allclose(t[3], [0.0, 0.0, 0.0, 1.0]):
        raise ExportError(f"mesh transform must be a 4x4 similarity with last row [0, 0, 0, 1], "
                          f"got {t.tolist()}")
    inv = np.linalg.inv(t)
    verts = np.asarray(mesh.vertices) @ inv[:3, :3].T + inv[:3, 3]
    faces = np.asarray(mesh.faces)
    if np.linalg.det(t[:3, :3]) < 0:  # a reflection would turn the mesh inside out
        faces = faces[:, ::-1]
    out = trimesh.Trimesh(verts, faces, process=False)
    if mesh.visual.kind == "vertex":
        out.visual.vertex_colors = np.asarray(mesh.visual.vertex_colors)
    return out

"""Camera paths for novel-view videos: orbit, spiral, smooth interpolation, nerfstudio files.

Every function returns `Cameras` with OpenCV camera-to-world matrices (x right, y down,
z forward; see nerf/conventions.py) in the scene's normalised frame. Looped paths (orbit,
spiral) place frame k at angle 2 pi k / n, so the frame after the last would equal the first and
a looping video has no stutter. Poses are built in float64 and stored as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from nerf.cameras import Cameras
from nerf.datasets.checks import check_poses
from nerf.errors import ExportError, SceneError
from nerf.export.crop import OrientedBox
from nerf.export.nerfstudio import read_json_object
from nerf.rotations import PARALLEL_EPS, closest_point_to_axes, quat_to_rotmat, rotmat_to_quat
from nerf.rotations import look_at as look_at_c2w

LLFF_FOCUS_WEIGHT = 0.75  # LLFF's weight of `far` in its harmonic mean of near and far
SPIRAL_RADIUS_QUANTILE = 0.9  # spiral radii: this quantile of camera offsets (LLFF)
AXES_MAX_CONDITION = 1e6  # optical axes this close to parallel have no meeting point


def _vec3(v, name: str) -> Tensor:  # -> [3] float64
    t = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
    if t.shape != (3,):
        raise ExportError(f"camera path: {name} must have 3 components, got {tuple(t.shape)}")
    return t


def _look_at_batch(
    eyes: Tensor,  # [N, 3] float64
    targets: Tensor,  # [N, 3]
    up: Tensor,  # [3] or [N, 3] world up (image "up" is camera -y)
) -> Tensor:  # [N, 4, 4] float64 OpenCV c2w
    """nerf.rotations.look_at with its error as an ExportError."""
    try:
        return look_at_c2w(eyes, targets, up)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc


def look_at(eye, target, up) -> Tensor:  # [4, 4] float32
    """OpenCV camera-to-world of a camera at `eye` looking at `target` with `up` pointing up.

    `nerf.rotations.look_at` for one camera, as float32; an ExportError when the viewing
    direction is parallel to `up`.

    Args:
        eye: [3] camera centre.
        target: [3] point on the optical axis (camera +z).
        up: [3] world direction that appears upwards in the image (camera -y).

    Returns:
        [4, 4] float32 c2w.
    """
    return _look_at_batch(_vec3(eye, "eye")[None], _vec3(target, "target")[None], _vec3(up, "up"))[0].float()


def _fov_intrinsics(fov_deg: float, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a square-pixel pinhole with vertical field of view `fov_deg`."""
    if not 0.0 < fov_deg < 180.0:
        raise ExportError(f"camera path: vertical field of view must be in (0, 180) degrees, got {fov_deg}")
    focal = 0.5 * height / math.tan(math.radians(fov_deg) / 2.0)
    return focal, focal, width / 2.0, height / 2.0


def _check_frames(n_frames: int, minimum: int = 1) -> None:
    if n_frames < minimum:
        raise ExportError(f"camera path: n_frames must be >= {minimum}, got {n_frames}")


def orbit_path(
    center,  # [3] point every frame looks at
    up,  # [3] axis of the orbit, also the image up
    radius: float,
    elevation_deg: float,
    n_frames: int,
    width: int,
    height: int,
    fov_deg: float,
    start_direction=None,  # [3] direction from center towards frame 0 (projected horizontal)
) -> Cameras:
    """A closed circle of cameras around `center`, counter-clockwise seen from `up`.

    Frame k sits at azimuth 2 pi k / n_frames, elevation `elevation_deg` above the plane
    perpendicular to `up`, at distance `radius` from `center`.

    Returns:
        n_frames Cameras with vertical field of view `fov_deg`.
    """
    _check_frames(n_frames)
    center, up = _vec3(center, "center"), _vec3(up, "up")
    up = up / up.norm()
    if start_direction is None:
        start = torch.zeros(3, dtype=torch.float64)
        start[int(torch.argmin(up.abs()))] = 1.0  # the world axis least aligned with up
    else:
        start = _vec3(start_direction, "start_direction")
    e1 = start - (start @ up) * up
    if float(e1.norm()) < PARALLEL_EPS:
        raise ExportError("orbit_path: start_direction is parallel to up")
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1)
    azimuth = 2.0 * math.pi * torch.arange(n_frames, dtype=torch.float64) / n_frames
    el = math.radians(elevation_deg)
    ring = torch.cos(azimuth)[:, None] * e1 + torch.sin(azimuth)[:, None] * e2
    eyes = center + radius * (math.cos(el) * ring + math.sin(el) * up)
    c2w = _look_at_batch(eyes, center.expand_as(eyes), up)
    return Cameras.create(c2w.float(), *_fov_intrinsics(fov_deg, width, height), width, height)


def average_pose(cameras: Cameras) -> Tensor:  # [4, 4] float64
    """Mean camera: mean centre, mean forward axis, mean down axis (re-orthonormalised)."""
    c2w = cameras.c2w.double()
    z = c2w[:, :3, 2].mean(0)
    z = z / z.norm()
    y_down = c2w[:, :3, 1].mean(0)
    x = torch.linalg.cross(y_down, z)
    x = x / x.norm()
    out = torch.eye(4, dtype=torch.float64)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = x, torch.linalg.cross(z, x), z, c2w[:, :3, 3].mean(0)
    return out


def optical_axes_focus(cameras: Cameras) -> Tensor:  # [3] float64
    """The point nearest (least squares) to every camera's optical axis."""
    c2w = cameras.c2w.double()
    focus = closest_point_to_axes(c2w[:, :3, 3], c2w[:, :3, 2], max_condition=AXES_MAX_CONDITION)
    if focus is None:
        raise ExportError(
            "spiral_path: the cameras' optical axes are (nearly) parallel and meet nowhere; "
            "pass focus_distance or the scene's near and far"
        )
    return focus


def spiral_path(
    cameras: Cameras,
    n_frames: int,
    n_rotations: float = 2.0,
    radius_scale: float = 1.0,
    focus_distance: float | None = None,
    near: float | None = None,
    far: float | None = None,
    z_rate: float = 0.5,
) -> Cameras:
    """LLFF's spiral around the average pose of forward-facing captures, looking at a focus point.

    The camera moves in the average camera's image plane on an ellipse whose radii are the 90th
    percentile of the input cameras' offsets (times `radius_scale`), and back and forth along the
    viewing axis at `z_rate` times the angular rate. Every frame looks at one focus point:
    `focus_distance` ahead of the average centre on the average viewing axis; or, given the
    scene's `near` and `far` bounds, LLFF's distance 1 / ((1 - 0.75) / near + 0.75 / far), a
    harmonic mean leaning to the far bound so that most of the scene moves little on screen;
    or, with neither, the point where the cameras' optical axes meet in the least-squares
    sense (what the photographer aimed at; an error if the axes are nearly parallel).

    Returns:
        n_frames Cameras with the intrinsics and size of cameras[0].
    """
    _check_frames(n_frames)
    avg = average_pose(cameras)
    rot, center = avg[:3, :3], avg[:3, 3]
    if focus_distance is None and near is not None and far is not None:
        focus_distance = 1.0 / ((1.0 - LLFF_FOCUS_WEIGHT) / near + LLFF_FOCUS_WEIGHT / far)
    if focus_distance is None:
        target = optical_axes_focus(cameras)
    else:
        target = center + focus_distance * rot[:, 2]
    ahead = float((target - center) @ rot[:, 2])
    if ahead <= 0:
        raise ExportError(f"spiral_path: the focus point lies behind the cameras (distance {ahead:.4g})")
    local = (cameras.c2w[:, :3, 3].double() - center) @ rot  # offsets in average-camera axes
    radii = torch.quantile(local.abs(), SPIRAL_RADIUS_QUANTILE, dim=0) * radius_scale
    theta = 2.0 * math.pi * n_rotations * torch.arange(n_frames, dtype=torch.float64) / n_frames
    offsets = torch.stack([torch.cos(theta), torch.sin(theta), torch.sin(theta * z_rate)], dim=-1) * radii
    eyes = center + offsets @ rot.T
    c2w = _look_at_batch(eyes, target.expand_as(eyes), -rot[:, 1])
    return _with_intrinsics_of(cameras, 0, c2w.float())


def _with_intrinsics_of(cameras: Cameras, i: int, c2w: Tensor) -> Cameras:
    cam = cameras.to("cpu")
    return Cameras.create(c2w, cam.fx[i], cam.fy[i], cam.cx[i], cam.cy[i], cam.width[i], cam.height[i])


# --- smooth interpolation through key cameras ------------------------------------------------


def _quat_mul(a: Tensor, b: Tensor) -> Tensor:  # [..., 4] Hamilton product
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
         aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1,
    )


def _quat_conj(q: Tensor) -> Tensor:
    return q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def _quat_log(q: Tensor) -> Tensor:  # unit [..., 4] -> pure [..., 3] (half-angle times axis)
    v = q[..., 1:]
    n = v.norm(dim=-1, keepdim=True)
    angle = torch.atan2(n, q[..., :1])
    return torch.where(n > 1e-12, v / n.clamp_min(1e-12) * angle, v)


def _quat_exp(u: Tensor) -> Tensor:  # pure [..., 3] -> unit [..., 4]
    n = u.norm(dim=-1, keepdim=True)
    sinc = torch.where(n > 1e-12, torch.sin(n) / n.clamp_min(1e-12), torch.ones_like(n))
    return torch.cat([torch.cos(n), u * sinc], -1)


def slerp(q0: Tensor, q1: Tensor, h: Tensor) -> Tensor:  # [N, 4], [N, 4], [N] -> [N, 4]
    """Spherical linear interpolation of unit quaternions (no sign flip: callers align signs)."""
    cos = (q0 * q1).sum(-1).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    s = torch.sin(angle)
    near = s.abs() < 1e-9
    w0 = torch.where(near, 1.0 - h, torch.sin((1.0 - h) * angle) / torch.where(near, 1.0, s))
    w1 = torch.where(near, h, torch.sin(h * angle) / torch.where(near, 1.0, s))
    out = w0[:, None] * q0 + w1[:, None] * q1
    return out / out.norm(dim=-1, keepdim=True)


def _squad_controls(q: Tensor) -> Tensor:  # [C, 4] sign-aligned -> [C, 4] inner control points
    """s_i = q_i exp(-(log(q_i^-1 q_{i+1}) + log(q_i^-1 q_{i-1})) / 4); end points are their own."""
    s = q.clone()
    if len(q) > 2:
        inv = _quat_conj(q[1:-1])
        tangent = _quat_log(_quat_mul(inv, q[2:])) + _quat_log(_quat_mul(inv, q[:-2]))
        s[1:-1] = _quat_mul(q[1:-1], _quat_exp(-tangent / 4.0))
    return s


def _catmull_rom(p: Tensor, seg: Tensor, h: Tensor) -> Tensor:  # [C, D], [N], [N] -> [N, D]
    """Uniform Catmull-Rom spline through the rows of p; ends extended by reflection."""
    ext = torch.cat([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    p0, p1, p2, p3 = ext[seg], ext[seg + 1], ext[seg + 2], ext[seg + 3]
    h = h[:, None]
    a, b = 2 * p0 - 5 * p1 + 4 * p2 - p3, 3 * p1 - p0 - 3 * p2 + p3
    return 0.5 * (2 * p1 + (p2 - p0) * h + a * h**2 + b * h**3)


def interpolate_path(cameras: Cameras, n_frames: int) -> Cameras:
    """A smooth path through key cameras, in their order.

    Centres follow a uniform Catmull-Rom spline and rotations a squad (spherical cubic) curve of
    quaternions, both C1 and passing through every key camera. Frame k sits at spline parameter
    s = k (C - 1) / (n_frames - 1), so frame k is key camera s exactly when s is an integer
    (choose n_frames = m (C - 1) + 1 to hit every key). Intrinsics are rescaled to the size of
    cameras[0] and interpolated linearly.

    Returns:
        n_frames Cameras of the size of cameras[0].
    """
    c = len(cameras)
    if c < 2:
        raise ExportError(f"interpolate_path: needs at least 2 key cameras, got {c}")
    _check_frames(n_frames, 2)
    cam = cameras.to("cpu")
    s = torch.arange(n_frames, dtype=torch.float64) * (c - 1) / (n_frames - 1)
    seg = torch.clamp(torch.floor(s).long(), max=c - 2)
    h = s - seg
    centers = _catmull_rom(cam.c2w[:, :3, 3].double(), seg, h)
    q = rotmat_to_quat(cam.c2w[:, :3, :3])
    for i in range(1, c):  # shortest arcs: consecutive quaternions in the same hemisphere
        if float(q[i] @ q[i - 1]) < 0:
            q[i] = -q[i]
    ctrl = _squad_controls(q)
    outer = slerp(q[seg], q[seg + 1], h)
    inner = slerp(ctrl[seg], ctrl[seg + 1], h)
    rot = quat_to_rotmat(slerp(outer, inner, 2.0 * h * (1.0 - h)))
    c2w = torch.eye(4, dtype=torch.float64).repeat(n_frames, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = rot, centers
    sx = (cam.width[0] / cam.width).double()
    sy = (cam.height[0] / cam.height).double()
    intr = torch.stack([cam.fx * sx, cam.fy * sy, cam.cx * sx, cam.cy * sy], -1)  # [C, 4]
    intr = intr[seg] * (1.0 - h[:, None]) + intr[seg + 1] * h[:, None]
    return Cameras.create(c2w.float(), *intr.float().unbind(-1), cam.width[0], cam.height[0])


# --- nerfstudio camera_path.json -------------------------------------------------------------


def _opengl_to_opencv(c2w: Tensor) -> Tensor:  # [C, 4, 4]: flip camera y and z axes
    out = c2w.clone()
    out[:, :3, 1:3] *= -1.0
    return out


@dataclass(frozen=True)
class NerfstudioPath:
    """A nerfstudio camera_path.json, in the frame it was written in (its dataparser frame)."""

    cameras: Cameras  # OpenCV c2w, render_width x render_height
    fov: Tensor  # [N] float64 vertical field of view of each frame, degrees
    fps: float
    crop: OrientedBox | None = None  # "crop": density outside it is dropped
    crop_background: Tensor | None = None  # [3] float32 in [0, 1], the colour behind a crop

    def resized(self, width: int = 0, height: int = 0) -> "NerfstudioPath":
        """The path rendered at `width` x `height` (0 = keep the aspect ratio; both 0 = as is).

        Each frame keeps its vertical field of view, as nerfstudio's own renderer does for the
        size a user picks: fy = fx = height / 2 / tan(fov / 2), principal point at the centre.
        """
        w0, h0 = int(self.cameras.width[0]), int(self.cameras.height[0])
        if width <= 0 and height <= 0:
            return self
        if width < 0 or height < 0:
            raise ExportError(f"camera path: size {width}x{height} must be positive")
        width = width or max(1, round(w0 * height / h0))
        height = height or max(1, round(h0 * width / w0))
        focal = torch.tensor([_fov_intrinsics(float(f), width, height)[0] for f in self.fov])
        cams = Cameras.create(self.cameras.c2w, focal, focal, width / 2.0, height / 2.0, width, height)
        return replace(self, cameras=cams)

    def transformed(self, transform: Tensor) -> "NerfstudioPath":
        """The path (and its crop box) moved by a similarity `transform [4, 4]`."""
        m = torch.as_tensor(transform, dtype=torch.float64)
        crop = None if self.crop is None else self.crop.transformed(m)
        return replace(self, cameras=self.cameras.transformed(m.float()), crop=crop)


def _crop_box(data: dict, path: Path) -> tuple[OrientedBox | None, Tensor | None]:
    """nerfstudio's optional "crop": crop_center, crop_scale, crop_rot (rpy), crop_bg_color (0..255)."""
    crop = data.get("crop")
    if crop is None:
        return None, None
    if not isinstance(crop, dict):
        raise ExportError(f"{path}: 'crop' must be an object or null")
    try:
        center = [float(v) for v in crop["crop_center"]]
        size = [float(v) for v in crop["crop_scale"]]
        rpy = [float(v) for v in crop.get("crop_rot", (0.0, 0.0, 0.0))]
        bg = crop.get("crop_bg_color", {"r": 0, "g": 0, "b": 0})
        background = [float(bg[k]) / 255.0 for k in ("r", "g", "b")]
    except KeyError as exc:
        raise ExportError(f"{path}: 'crop' has no {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{path}: 'crop' values must be numbers ({exc})") from exc
    if len(center) != 3 or len(size) != 3 or len(rpy) != 3:
        raise ExportError(f"{path}: crop_center, crop_scale and crop_rot must have 3 numbers each")
    if not all(math.isfinite(v) for v in center + rpy) or not all(math.isfinite(v) and v > 0 for v in size):
        raise ExportError(f"{path}: crop_center and crop_rot must be finite and crop_scale positive, "
                          f"got {center}, {rpy}, {size}")
    return OrientedBox.from_rpy(center, rpy, size), torch.tensor(background).clamp(0, 1)


def load_nerfstudio_camera_path(path: str | Path) -> NerfstudioPath:
    """Read a nerfstudio camera_path.json (perspective cameras), in the frame it was written in.

    Each entry of "camera_path" holds "camera_to_world" (16 floats, row-major 4x4, OpenGL axes;
    12 floats = the top 3x4 rows are accepted too) and "fov" (vertical, degrees). The image size
    is "render_width" x "render_height" (square pixels, principal point at the centre);
    "aspect" and "keyframes" describe the editor's view and are not needed. The frame rate is
    "fps", or the frame count over "seconds". An optional "crop" gives a box (see
    nerf.export.crop). nerfstudio writes paths in its dataparser frame: for our runs, the
    normalised frame that <run>/dataparser_transforms.json describes.

    Returns:
        NerfstudioPath (cameras, fov per frame, fps, crop box and its background colour).
    """
    path = Path(path)
    data = read_json_object(path, "camera path file", "a 'camera_path' list")
    camera_type = data.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise ExportError(f"{path}: camera_type {camera_type!r} is not supported (only 'perspective')")
    try:
        width, height = int(data["render_width"]), int(data["render_height"])
    except KeyError as exc:
        raise ExportError(f"{path}: missing key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{path}: render_width and render_height must be integers") from exc
    if width < 1 or height < 1:
        raise ExportError(f"{path}: render size {width}x{height} must be positive")
    frames = data.get("camera_path")
    if not isinstance(frames, list) or not frames:
        raise ExportError(f"{path}: 'camera_path' must be a non-empty list of frames")
    c2w, focal, fovs = [], [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise ExportError(f"{path}: camera_path[{i}] must be an object, got {type(frame).__name__}")
        for key, value in (("camera_to_world", frame.get("camera_to_world")),
                           ("fov", frame.get("fov", data.get("default_fov")))):
            if value is None:
                raise ExportError(f"{path}: camera_path[{i}] has no {key!r}")
        try:
            matrix = torch.tensor(frame["camera_to_world"], dtype=torch.float64).reshape(-1)
            fov = float(frame.get("fov", data.get("default_fov")))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ExportError(f"{path}: camera_path[{i}]: camera_to_world and fov must be numbers") from exc
        if matrix.numel() not in (12, 16) or not bool(torch.isfinite(matrix).all()):
            raise ExportError(
                f"{path}: camera_path[{i}].camera_to_world must be 16 finite numbers, got {matrix.numel()}"
            )
        if matrix.numel() == 12:
            matrix = torch.cat([matrix, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)])
        try:
            rigid = check_poses(matrix.reshape(1, 4, 4).numpy(), [f"{path}: camera_path[{i}]"], "camera_to_world")
        except SceneError as exc:
            raise ExportError(str(exc)) from exc
        c2w.append(torch.from_numpy(rigid[0]))
        fovs.append(fov)
        try:
            focal.append(_fov_intrinsics(fov, width, height)[0])
        except ExportError as exc:
            raise ExportError(f"{path}: camera_path[{i}]: {exc}") from exc
    fps = data.get("fps")
    if fps is None and data.get("seconds"):
        fps = len(frames) / float(data["seconds"])
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise ExportError(f"{path}: needs a positive 'fps' (or 'seconds'), got {fps!r}")
    cameras = Cameras.create(
        _opengl_to_opencv(torch.stack(c2w)).float(), torch.tensor(focal), torch.tensor(focal),
        width / 2.0, height / 2.0, width, height,
    )
    crop, background = _crop_box(data, path)
    return NerfstudioPath(cameras, torch.tensor(fovs, dtype=torch.float64), float(fps), crop, background)

"""Cameras: one container for every format, ray generation and projection.

Vocabulary (see nerf/conventions.py): `c2w` is camera-to-world in the OpenCV convention (x right,
y down, z forward). Pixel coordinates `xy` are continuous image coordinates with pixel centres at
+0.5. Distortion follows OpenCV: model "opencv" uses (k1, k2, k3, p1, p2) on normalised image
coordinates, model "fisheye" is the equidistant model theta_d = theta (1 + k1 theta^2 + k2 theta^4
+ k3 theta^6 + k4 theta^8). Coefficients are stored per camera as `distortion [C, 6]` in the order
(k1, k2, k3, k4, p1, p2); unused entries are zero.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

CAMERA_MODELS = ("pinhole", "opencv", "fisheye")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
UNDISTORT_ITERS = 20  # Newton steps at most; converges to float32 precision within ~5 for real lenses
UNDISTORT_TOLERANCE = 1e-12  # Newton stops once no point moves more than this (normalised coordinates)


@dataclass(frozen=True)
class Cameras:
    """A batch of C pinhole or distorted cameras (all tensors share one device)."""

    c2w: Tensor  # [C, 4, 4] float32, OpenCV axes
    fx: Tensor  # [C] float32, pixels
    fy: Tensor  # [C]
    cx: Tensor  # [C]
    cy: Tensor  # [C]
    width: Tensor  # [C] int64
    height: Tensor  # [C] int64
    distortion: Tensor | None = None  # [C, 6] (k1, k2, k3, k4, p1, p2) or None
    model: str = "pinhole"  # one of CAMERA_MODELS, shared by the batch

    def __post_init__(self) -> None:
        c = self.c2w.shape[0]
        if self.c2w.shape != (c, 4, 4):
            raise ValueError(f"Cameras: c2w must be [C, 4, 4], got {tuple(self.c2w.shape)}")
        for name in ("fx", "fy", "cx", "cy", "width", "height"):
            if getattr(self, name).shape != (c,):
                raise ValueError(f"Cameras: {name} must be [{c}], got {tuple(getattr(self, name).shape)}")
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"Cameras: unknown model {self.model!r}; expected one of {CAMERA_MODELS}")
        if self.distortion is not None and self.distortion.shape != (c, 6):
            raise ValueError(f"Cameras: distortion must be [{c}, 6], got {tuple(self.distortion.shape)}")

    @staticmethod
    def create(
        c2w: Tensor,  # [C, 4, 4] or [C, 3, 4]
        fx, fy, cx, cy,  # scalars or [C]
        width, height,  # scalars or [C]
        distortion: Tensor | None = None,  # [C, 6] or [6]
        model: str = "pinhole",
    ) -> "Cameras":
        """Build cameras, broadcasting shared intrinsics to every camera."""
        c2w = torch.as_tensor(c2w, dtype=torch.float32)
        if c2w.shape[-2:] == (3, 4):
            bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(c2w.shape[0], 1, 4)
            c2w = torch.cat([c2w, bottom], dim=1)
        c = c2w.shape[0]

        def per_camera(v, dtype):
            return torch.as_tensor(v, dtype=dtype).reshape(-1).expand(c).clone()

        dist = None
        if distortion is not None:
            dist = torch.as_tensor(distortion, dtype=torch.float32).reshape(-1, 6).expand(c, 6).clone()
            if model == "pinhole" and bool(dist.abs().max() > 0):
                model = "opencv"
        return Cameras(
            c2w=c2w,
            fx=per_camera(fx, torch.float32),
            fy=per_camera(fy, torch.float32),
            cx=per_camera(cx, torch.float32),
            cy=per_camera(cy, torch.float32),
            width=per_camera(width, torch.int64),
            height=per_camera(height, torch.int64),
            distortion=dist,
            model=model,
        )

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index) -> "Cameras":
        """A sub-batch (index: int, slice, list or tensor of camera indices)."""
        if isinstance(index, int):
            index = [index]
        dist = None if self.distortion is None else self.distortion[index]
        return Cameras(
            self.c2w[index], self.fx[index], self.fy[index], self.cx[index], self.cy[index],
            self.width[index], self.height[index], dist, self.model,
        )

    def to(self, device) -> "Cameras":
        dist = None if self.distortion is None else self.distortion.to(device)
        return Cameras(
            self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device),
            self.cy.to(device), self.width.to(device), self.height.to(device), dist, self.model,
        )

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def centers(self) -> Tensor:  # [C, 3]
        return self.c2w[:, :3, 3]

    @property
    def forward(self) -> Tensor:  # [C, 3] unit viewing directions (camera +z)
        return self.c2w[:, :3, 2]

    def scaled(self, factor: float) -> "Cameras":
        """Intrinsics for images resized by `factor` (0.5 halves the width and height).

        With pixel centres at +0.5, continuous coordinates scale exactly: u' = factor * u.
        """
        return replace(
            self,
            fx=self.fx * factor, fy=self.fy * factor, cx=self.cx * factor, cy=self.cy * factor,
            width=torch.round(self.width.double() * factor).long(),
            height=torch.round(self.height.double() * factor).long(),
        )

    def transformed(self, transform: Tensor) -> "Cameras":
        """Cameras moved by a similarity `transform [4, 4]` = [[s R, t], [0, 1]] (world -> world')."""
        transform = transform.to(self.c2w)
        linear = transform[:3, :3]
        scale = torch.linalg.det(linear).abs() ** (1.0 / 3.0)
        rot = linear / scale
        c2w = self.c2w.clone()
        c2w[:, :3, :3] = rot @ self.c2w[:, :3, :3]
        c2w[:, :3, 3] = self.centers @ linear.T + transform[:3, 3]
        return replace(self, c2w=c2w)

    # --- image plane <-> camera rays -------------------------------------------------------

    def _distortion(self, camera_indices: Tensor) -> Tensor | None:
        if self.model == "pinhole" or self.distortion is None:
            return None
        return self.distortion[camera_indices]

    def pixels_to_camera_directions(
        self,
        camera_indices: Tensor,  # [N] int64
        xy: Tensor,  # [N, 2] continuous pixel coordinates
    ) -> Tensor:  # [N, 3] unit directions in camera axes (OpenCV)
        """Back-project pixels to unit directions in the camera frame, undoing lens distortion."""
        ci = camera_indices
        xd = (xy[:, 0] - self.cx[ci]) / self.fx[ci]
        yd = (xy[:, 1] - self.cy[ci]) / self.fy[ci]
        dist = self._distortion(ci)
        if self.model == "fisheye":
            return _fisheye_unproject(xd, yd, dist)
        if dist is not None:
            xd, yd = _opencv_undistort(xd, yd, dist)
        dirs = torch.stack([xd, yd, torch.ones_like(xd)], dim=-1)
        return dirs / dirs.norm(dim=-1, keepdim=True)

    def generate_rays(
        self,
        camera_indices: Tensor,  # [N] int64
        xy: Tensor,  # [N, 2] continuous pixel coordinates (centres at +0.5)
    ) -> tuple[Tensor, Tensor]:  # origins [N, 3], unit directions [N, 3]
        """World-space rays through continuous pixel positions."""
        dirs_cam = self.pixels_to_camera_directions(camera_indices, xy)
        rot = self.c2w[camera_indices, :3, :3]
        dirs = (rot @ dirs_cam.unsqueeze(-1)).squeeze(-1)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        return self.c2w[camera_indices, :3, 3], dirs

    def pixel_rays(
        self,
        camera_indices: Tensor,  # [N] int64
        cols: Tensor,  # [N] int64 pixel column
        rows: Tensor,  # [N] int64 pixel row
    ) -> tuple[Tensor, Tensor]:  # origins [N, 3], unit directions [N, 3]
        """Rays through pixel centres."""
        xy = torch.stack([cols.float() + 0.5, rows.float() + 0.5], dim=-1)
        return self.generate_rays(camera_indices, xy)

    def image_rays(self, camera_index: int) -> tuple[Tensor, Tensor]:
        """All pixel-centre rays of one camera: origins [H, W, 3], directions [H, W, 3]."""
        h, w = int(self.height[camera_index]), int(self.width[camera_index])
        rows, cols = torch.meshgrid(
            torch.arange(h, device=self.device), torch.arange(w, device=self.device), indexing="ij"
        )
        ci = torch.full((h * w,), camera_index, dtype=torch.long, device=self.device)
        o, d = self.pixel_rays(ci, cols.reshape(-1), rows.reshape(-1))
        return o.reshape(h, w, 3), d.reshape(h, w, 3)

    def project(
        self,
        points: Tensor,  # [P, 3] world points
        camera_indices: Tensor,  # [P] int64
    ) -> tuple[Tensor, Tensor]:  # xy [P, 2] continuous pixel coordinates, depth [P] (camera z)
        """Project world points into the given cameras, applying lens distortion."""
        c2w = self.c2w[camera_indices]
        rel = points - c2w[:, :3, 3]
        cam = (c2w[:, :3, :3].transpose(1, 2) @ rel.unsqueeze(-1)).squeeze(-1)
        z = cam[:, 2]
        x, y = cam[:, 0] / z, cam[:, 1] / z
        dist = self._distortion(camera_indices)
        if self.model == "fisheye":
            x, y = _fisheye_distort(cam, dist)
        elif dist is not None:
            x, y = _opencv_distort(x, y, dist)
        ci = camera_indices
        return torch.stack([x * self.fx[ci] + self.cx[ci], y * self.fy[ci] + self.cy[ci]], dim=-1), z


# --- lens models (normalised image coordinates) --------------------------------------------


def _opencv_distort(x: Tensor, y: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
    """OpenCV radial-tangential distortion: [N], [N], [N, 6] -> distorted x, y."""
    k1, k2, k3, _, p1, p2 = dist.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def _opencv_undistort(xd: Tensor, yd: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
    """Invert `_opencv_distort` by Newton's method (analytic 2x2 Jacobian), in float64, until no
    point moves by more than UNDISTORT_TOLERANCE (float32 keeps 7 digits, so the result is
    converged to its last bit) or for UNDISTORT_ITERS steps."""
    xd64, yd64, d = xd.double(), yd.double(), dist.double()
    k1, k2, k3, _, p1, p2 = d.unbind(-1)
    x, y = xd64.clone(), yd64.clone()
    for _ in range(UNDISTORT_ITERS):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        d_radial = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
        fx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd64
        fy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd64
        j00 = radial + 2 * x * x * d_radial + 2 * p1 * y + 6 * p2 * x
        j01 = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
        j10 = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
        j11 = radial + 2 * y * y * d_radial + 6 * p1 * y + 2 * p2 * x
        det = j00 * j11 - j01 * j10
        step_x, step_y = (fx * j11 - fy * j01) / det, (fy * j00 - fx * j10) / det
        x, y = x - step_x, y - step_y
        if len(x) == 0 or float(torch.maximum(step_x.abs().max(), step_y.abs().max())) <= UNDISTORT_TOLERANCE:
            break
    return x.to(xd.dtype), y.to(yd.dtype)


def _fisheye_distort(cam: Tensor, dist: Tensor | None) -> tuple[Tensor, Tensor]:
    """Equidistant fisheye projection of camera-frame points [N, 3] -> normalised x, y."""
    r = torch.sqrt(cam[:, 0] ** 2 + cam[:, 1] ** 2)
    theta = torch.atan2(r, cam[:, 2])
    theta_d = theta
    if dist is not None:
        k1, k2, k3, k4 = dist[:, 0], dist[:, 1], dist[:, 2], dist[:, 3]
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    scale = torch.where(r > 1e-12, theta_d / r.clamp_min(1e-12), torch.ones_like(r) / cam[:, 2])
    return cam[:, 0] * scale, cam[:, 1] * scale


def _fisheye_unproject(xd: Tensor, yd: Tensor, dist: Tensor | None) -> Tensor:
    """Invert the equidistant fisheye model: normalised xd, yd [N] -> unit directions [N, 3]."""
    theta_d = torch.sqrt(xd.double() ** 2 + yd.double() ** 2)
    theta = theta_d.clone()
    if dist is not None:
        k1, k2, k3, k4 = (dist[:, i].double() for i in range(4))
        for _ in range(UNDISTORT_ITERS):
            t2 = theta * theta
            f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
            df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + 9 * k4 * t2)))
            theta = theta - f / df
    scale = torch.where(theta_d > 1e-12, torch.sin(theta) / theta_d.clamp_min(1e-12), torch.ones_like(theta))
    dirs = torch.stack([xd.double() * scale, yd.double() * scale, torch.cos(theta)], dim=-1)
    return (dirs / dirs.norm(dim=-1, keepdim=True)).to(xd.dtype)

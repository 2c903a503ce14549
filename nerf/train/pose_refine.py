"""Camera pose refinement: a learned rigid correction of each training camera's pose.

Each training camera i has six parameters delta_i = (omega_i, tau_i), zero at the start (the
given pose). Its refined camera-to-world matrix is the given one *right*-multiplied by the
correction, as nerfstudio's CameraOptimizer does:

    c2w_i' = c2w_i @ [[exp(omega_i), tau_i], [0, 1]]      R_i' = R_i exp(omega_i), t_i' = t_i + R_i tau_i

so omega_i is an axis-angle rotation (radians) in the camera's own axes about its centre, and tau_i
a translation in camera axes (scene units). Right-multiplying keeps the two apart: a rotation
never moves the camera centre (a left-multiplied, world-frame rotation about the world origin
would move it by |t| * angle), and each coordinate means the same thing for every camera
(x right, y down, z forward), which suits Adam's per-coordinate step sizes. The rotation and the
translation have separate exponentials (nerfstudio's default "SO3xR3"), not the coupled SE(3)
exponential: same minimum, simpler gradients.

Training rays are generated from the given poses and then corrected, in world coordinates:

    o' = o + R_i tau_i,      d' = R_i exp(omega_i) R_i^T d

(`PoseRefinement.forward`).

Held-out views were never trained, so they keep their given poses. A run's renders
(`refined_cameras`: evaluation, test views, videos, meshes) put each training camera at its
refined pose. Scoring a held-out view first fits its pose to its photo under the trained field
(nerf/train/pose_align.py, BARF's protocol), because the refined frame can sit a few hundredths of
a degree from the given one. Moving the held-out cameras by the common rigid motion of the
corrections instead (a least-squares fit of the refined training poses onto the given ones) was
measured on lego_200 and left out: +0.48 dB after 150 s, -0.23 dB after 600 s (docs/DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from nerf.cameras import Cameras
from nerf.errors import CheckpointError
from nerf.rotations import rotation_angle_deg

# Below this squared angle the exponential uses its Taylor series to theta^6 (the next term is
# below 3e-14: exact to float64 rounding, and differentiable at zero, where sin(theta) / theta is 0 / 0).
SMALL_ANGLE_SQ = 1e-2


def skew(v: Tensor) -> Tensor:  # v [..., 3] -> [..., 3, 3]
    """The cross-product matrix [v]x, with [v]x u = v x u."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(*v.shape[:-1], 3, 3)


def so3_exp(omega: Tensor) -> Tensor:  # omega [..., 3] axis * angle (radians) -> [..., 3, 3]
    """Rotation matrices exp([omega]x) by Rodrigues' formula, R = I + A [w]x + B [w]x^2 with
    A = sin(theta) / theta and B = (1 - cos(theta)) / theta^2, theta = |omega|.

    Near zero A and B come from their series in theta^2 (never from sqrt(theta^2), whose
    derivative is infinite at zero), so the gradient at the identity is finite and exact:
    d R / d omega = [.]x there.
    """
    theta_sq = (omega * omega).sum(-1)[..., None, None]  # [..., 1, 1]
    small = theta_sq < SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(safe_sq)
    t2, t4, t6 = theta_sq, theta_sq * theta_sq, theta_sq * theta_sq * theta_sq
    a = torch.where(small, 1.0 - t2 / 6.0 + t4 / 120.0 - t6 / 5040.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - t2 / 24.0 + t4 / 720.0 - t6 / 40320.0, (1.0 - torch.cos(theta)) / safe_sq)
    k = skew(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * k + b * (k @ k)


def compose(
    c2w: Tensor,  # [C, 4, 4] camera-to-world
    rotation: Tensor,  # [C, 3, 3] in camera axes
    translation: Tensor,  # [C, 3] in camera axes
) -> Tensor:  # [C, 4, 4]
    """c2w @ [[rotation, translation], [0, 1]]: a motion in each camera's own frame."""
    out = c2w.clone()
    out[:, :3, :3] = c2w[:, :3, :3] @ rotation
    out[:, :3, 3] = c2w[:, :3, 3] + (c2w[:, :3, :3] @ translation[..., None])[..., 0]
    return out


class PoseRefinement(nn.Module):
    """Learned corrections of T training cameras (see the module docstring).

    Args:
        c2w: [T, 4, 4] the given camera-to-world matrices of the training cameras, in the order
            of the trainer's training images (index i here = the i-th training image).

    The one parameter `delta` [T, 6] is (omega, tau) per camera, zero = the given pose.
    """

    def __init__(self, c2w: Tensor):
        super().__init__()
        if c2w.dim() != 3 or c2w.shape[1:] != (4, 4):
            raise ValueError(f"PoseRefinement: c2w must be [T, 4, 4], got {tuple(c2w.shape)}")
        # not persistent: the given poses come from the scene, the checkpoint holds only delta
        self.register_buffer("given", c2w.detach().float().clone(), persistent=False)
        self.delta = nn.Parameter(torch.zeros(c2w.shape[0], 6, device=c2w.device))

    def corrections(self) -> tuple[Tensor, Tensor]:  # rotations [T, 3, 3], translations [T, 3] (camera axes)
        return so3_exp(self.delta[:, :3]), self.delta[:, 3:]

    def refined_c2w(self) -> Tensor:  # [T, 4, 4]
        """The corrected camera-to-world matrices."""
        return refined_c2w(self.given, self.delta)

    def forward(
        self,
        cameras: Tensor,  # [N] int64, index into the T training cameras
        origins: Tensor,  # [N, 3] rays of the given poses
        directions: Tensor,  # [N, 3] unit
    ) -> tuple[Tensor, Tensor]:  # origins [N, 3], directions [N, 3] of the refined poses
        """Rays of the refined poses from rays of the given ones (differentiable in `delta`)."""
        rotation, translation = self.corrections()
        r = self.given[:, :3, :3]
        world_rotation = r @ rotation @ r.transpose(1, 2)  # [T, 3, 3]: R_i exp(omega_i) R_i^T
        shift = (r @ translation[..., None])[..., 0]  # [T, 3]: R_i tau_i
        origins = origins + shift[cameras]
        directions = (world_rotation[cameras] @ directions[..., None])[..., 0]
        return origins, directions


def refined_c2w(
    given: Tensor,  # [T, 4, 4] camera-to-world
    delta: Tensor,  # [T, 6] (omega, tau) per camera, as `PoseRefinement.delta`
) -> Tensor:  # [T, 4, 4]
    """The refined poses of corrections `delta` (a checkpoint's, or `PoseRefinement`'s)."""
    delta = delta.to(given)
    return compose(given, so3_exp(delta[:, :3]), delta[:, 3:])


def checked_delta(
    delta: Tensor,  # [T, 6] pose corrections read from a checkpoint
    n_train: int,
    source,  # the checkpoint, for the message
) -> Tensor:
    """`delta` when it holds one correction per training image of this scene, else CheckpointError
    naming the checkpoint, its shape and the scene's count."""
    if tuple(delta.shape) != (n_train, 6):
        raise CheckpointError(f"{source}: pose corrections of shape {tuple(delta.shape)}, this scene has "
                              f"{n_train} training images")
    return delta


def refined_cameras(
    cameras: Cameras,
    train_ids: Tensor,  # [T] int64: which cameras `delta` corrects, in its order
    delta: Tensor,  # [T, 6]
) -> Cameras:
    """`cameras` with each training camera at its refined pose; held-out cameras as given
    (module docstring)."""
    train_ids = torch.as_tensor(train_ids, dtype=torch.long, device=cameras.device)
    c2w = cameras.c2w.clone()
    c2w[train_ids] = refined_c2w(c2w[train_ids], delta).to(c2w)
    return dataclasses.replace(cameras, c2w=c2w)


def perturb_poses(
    c2w: Tensor,  # [C, 4, 4]
    degrees: float,
    distance: float,
    seed: int = 0,
) -> Tensor:  # [C, 4, 4]
    """Each pose turned by exactly `degrees` about a random axis through its centre and moved by
    exactly `distance` in a random direction (axes and directions uniform on the sphere, drawn
    from `seed`): the reproducible error of the pose-refinement check."""
    gen = torch.Generator().manual_seed(seed)
    c = c2w.shape[0]
    axes = torch.randn(c, 3, generator=gen, dtype=torch.float64)
    shifts = torch.randn(c, 3, generator=gen, dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    shifts = shifts / shifts.norm(dim=-1, keepdim=True)
    turn = so3_exp(axes * math.radians(degrees))
    out = c2w.detach().to("cpu", torch.float64).clone()
    out[:, :3, :3] = turn @ out[:, :3, :3]
    out[:, :3, 3] += distance * shifts
    return out.to(c2w)


def pose_errors(
    c2w: Tensor,  # [C, 4, 4] estimated
    reference: Tensor,  # [C, 4, 4] true
) -> tuple[Tensor, Tensor]:  # rotation error [C] degrees, centre error [C] scene units
    """Per camera: the angle of the rotation between the two orientations, and the distance
    between the two centres (no alignment: the field is scored in the given frame)."""
    c2w, reference = c2w.detach().double().cpu(), reference.detach().double().cpu()
    relative = reference[:, :3, :3].transpose(1, 2) @ c2w[:, :3, :3]
    degrees = torch.from_numpy(rotation_angle_deg(relative.numpy()))
    return degrees, (c2w[:, :3, 3] - reference[:, :3, 3]).norm(dim=-1)

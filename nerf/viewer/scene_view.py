"""The fixed content of the viewer's 3D scene: the scene box, the training cameras as frustums
with their photos, the up direction and the first view of each tab.

Everything is drawn in the run's normalised frame (the frame the field lives in).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nerf.cameras import Cameras
from nerf.datasets.scene import Scene
from nerf.frames import to_uint8_frame
from nerf.rotations import mean_up, rotmat_to_quat
from nerf.viewer.camera import ViewPose, pose_from_c2w, vertical_fov

FRUSTUM_SCALE = 0.05  # frustum depth as a fraction of the cameras' median distance to the box centre
FIRST_VIEW_BACKOFF = 0.6  # a tab's first view: this many camera-to-centre distances behind camera 0
FIRST_VIEW_RISE = 0.4  # and this many above it
BOX_COLOR = (255, 160, 0)
FRUSTUM_COLOR = (60, 60, 200)


def thumbnail(scene: Scene, index: int, size: int) -> np.ndarray:  # -> [h, w, 3] uint8
    """Camera `index`'s photo on the render background, its longer side `size` pixels (area
    filter)."""
    img = scene.image_float(index, scene.render_background)  # [H, W, 3]
    h, w = img.shape[:2]
    factor = size / max(h, w)
    if factor < 1.0:
        small = F.interpolate(img.permute(2, 0, 1)[None], size=(max(1, round(h * factor)), max(1, round(w * factor))),
                              mode="area")
        img = small[0].permute(1, 2, 0)
    return to_uint8_frame(img.numpy())


def scene_center(scene: Scene) -> np.ndarray:  # [3]
    return ((scene.aabb[0] + scene.aabb[1]) / 2).double().numpy()


def scene_up(cameras: Cameras) -> np.ndarray:  # [3] unit
    """World up as the training cameras hold it (their mean image-up direction)."""
    up = mean_up(cameras.c2w)
    return up / max(np.linalg.norm(up), 1e-12)


def add_scene_content(server, scene: Scene, train_ids: list[int], thumbnail_size: int,
                      on_frustum_click=None) -> list:
    """Scene box and training frustums on `server.scene`; returns the frustum handles.

    `on_frustum_click(client, camera_index)` runs when a frustum is clicked.
    """
    cams = scene.cameras
    server.scene.set_up_direction(tuple(scene_up(cams[train_ids]).tolist()))
    lo, hi = scene.aabb[0].double().numpy(), scene.aabb[1].double().numpy()
    server.scene.add_box("/scene_box", color=BOX_COLOR, dimensions=tuple((hi - lo).tolist()), wireframe=True,
                         position=tuple(((lo + hi) / 2).tolist()))
    centers = cams.centers[train_ids].double().numpy()
    distance = float(np.median(np.linalg.norm(centers - scene_center(scene), axis=-1)))
    handles = []
    for i in train_ids:
        q = rotmat_to_quat(cams.c2w[i, :3, :3].double().numpy())
        handle = server.scene.add_camera_frustum(
            f"/training_cameras/{i:04d}", fov=vertical_fov(cams, i),
            aspect=float(cams.width[i]) / float(cams.height[i]), scale=FRUSTUM_SCALE * distance,
            thickness=1.5, thickness_units="screen", color=FRUSTUM_COLOR, image=thumbnail(scene, i, thumbnail_size),
            format="jpeg", wxyz=tuple(np.asarray(q).tolist()), position=tuple(cams.c2w[i, :3, 3].tolist()),
        )
        if on_frustum_click is not None:
            handle.on_click(lambda event, i=i: on_frustum_click(event.client, i))
        handles.append(handle)
    return handles


def training_view_pose(scene: Scene, index: int, aspect: float) -> ViewPose:
    """The pose of training camera `index` as a browser camera of canvas `aspect`."""
    return pose_from_c2w(scene.cameras.c2w[index], vertical_fov(scene.cameras, index), aspect)


def move_client_camera(client, pose: ViewPose, look_distance: float | None = None) -> None:
    """Put a tab's camera at `pose` (its orbit centre `look_distance` ahead)."""
    c2w = pose.c2w().double().numpy()
    position = c2w[:3, 3]
    forward, up = c2w[:3, 2], -c2w[:3, 1]
    distance = look_distance if look_distance is not None else 1.0
    with client.atomic():
        client.camera.fov = pose.fov
        client.camera.position = tuple(position.tolist())
        client.camera.look_at = tuple((position + distance * forward).tolist())
        client.camera.up_direction = tuple(up.tolist())


def first_view(scene: Scene, train_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(position, look_at, up, vertical fov) of a tab's first view: the first training camera
    stepped back along its optical axis and up (FIRST_VIEW_BACKOFF, FIRST_VIEW_RISE times its
    distance to the box centre), so that the frustums are in sight and its own is out of the
    way, looking at the box centre."""
    i = train_ids[0]
    c2w = scene.cameras.c2w[i].double().numpy()
    center, up = scene_center(scene), scene_up(scene.cameras[train_ids])
    distance = float(np.linalg.norm(c2w[:3, 3] - center))
    position = c2w[:3, 3] + distance * (FIRST_VIEW_RISE * up - FIRST_VIEW_BACKOFF * c2w[:3, 2])
    return position, center, up, vertical_fov(scene.cameras, i)


def torch_ids(ids) -> list[int]:
    return [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]

"""iso_level "auto" of a run (nerf/jobs/mesh.rendered_surface_level) on a fake run."""

from types import SimpleNamespace

import pytest
import torch

from nerf.cameras import Cameras
from nerf.errors import ExportError
from nerf.jobs.mesh import rendered_surface_level

SIZE = 32  # image side, pixels
FOCAL = 32.0  # pixels


def camera_looking_along_z(eye_z: float) -> Cameras:
    """One camera at (0, 0, eye_z) with OpenCV axes (+z forward)."""
    c2w = torch.eye(4)[None].clone()
    c2w[0, 2, 3] = eye_z
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return Cameras(c2w, one(FOCAL), one(FOCAL), one(SIZE / 2), one(SIZE / 2),
                   torch.tensor([SIZE]), torch.tensor([SIZE]))


def test_rendered_surface_level_reads_density_where_rays_end():
    """A fake run whose renders end every ray on the plane z = 0 with full opacity: the level
    is the median of the field's density over points on that plane (here 40 + 10 x)."""
    cams = camera_looking_along_z(-2.0)

    def render_rays(origins, directions, opacity=1.0):
        t = -origins[:, 2] / directions[:, 2]  # distance to z = 0 along the unit ray
        return SimpleNamespace(opacity=torch.full_like(t, opacity), depth=opacity * t)

    def density(points):  # [P, 3] -> [P]; only points on z = 0 may be queried
        assert points[:, 2].abs().max() < 1e-5
        return 40.0 + 10.0 * points[:, 0]

    field = SimpleNamespace(query_density=density)
    renderer = SimpleNamespace(aabb=torch.zeros(2, 3), render_rays=render_rays, field=field)
    scene = SimpleNamespace(splits={"train": torch.tensor([0])}, cameras=cams, width=SIZE, height=SIZE)
    run = SimpleNamespace(scene=scene, renderer=renderer, run_dir="fake",
                          cfg=SimpleNamespace(train=SimpleNamespace(render_chunk=1000)))
    # x is symmetric about 0 over the pixel centres, in steps of 1/16 (10 x: 0.625 per column)
    assert rendered_surface_level(run, rays=4000) == pytest.approx(40.0, abs=0.625)
    renderer.render_rays = lambda o, d: render_rays(o, d, opacity=0.5)
    with pytest.raises(ExportError, match="none of 100 training rays ends on matter"):
        rendered_surface_level(run, rays=100)

"""Held-out renders are written whole or not at all (nerf.evaluation.views.score_views)."""

from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import nerf.evaluation.views as views


class FlatRenderer:
    """render_image gives a grey image of the photo's size."""

    aabb = torch.zeros(2, 3)

    def render_image(self, cameras, index, background, chunk):
        return {"rgb": torch.full((16, 20, 3), 0.5)}


def _scene():
    return SimpleNamespace(render_background=torch.ones(3), image_float=lambda i, bg: torch.full((16, 20, 3), 0.5))


def test_renders_are_saved_and_scored(tmp_path):
    [record] = views.score_views(FlatRenderer(), _scene(), None, [3], 1024, tmp_path / "out")
    assert record["view"] == 3 and record["psnr"] > 60
    image = iio.imread(tmp_path / "out" / "test_0003.png")
    assert image.shape == (16, 20, 3) and int(np.abs(image.astype(int) - 128).max()) <= 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test_0003.png"]  # no temporaries left


def test_a_failed_write_leaves_no_partial_image(tmp_path, monkeypatch):
    def failing_write(path, image):
        path.write_bytes(b"\x89PNG half")  # a partial file, then the disk fills
        raise OSError("No space left on device")

    monkeypatch.setattr(views.iio, "imwrite", failing_write)
    with pytest.raises(OSError, match="No space"):
        views.score_views(FlatRenderer(), _scene(), None, [0], 1024, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # neither the image nor its temporary

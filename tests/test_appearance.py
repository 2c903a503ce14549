"""Per-image appearance embeddings: they change colour only, held-out renders use their mean,
and training fits them to images of different exposure."""

from dataclasses import replace

import torch

from nerf.config import ModelConfig
from nerf.fields.ngp import NGPField
from nerf.train.trainer import Trainer
from tiny import tiny_config

AABB = torch.tensor([[-1.0] * 3, [1.0] * 3])


def _field(n_images=5, dim=4) -> NGPField:
    torch.manual_seed(0)
    cfg = ModelConfig(hash_levels=2, hash_log2_size=10, hash_max_resolution=32, hidden_dim=16,
                      hash_backend="torch", appearance_dim=dim)
    field = NGPField(AABB, cfg, n_images)
    with torch.no_grad():
        field.appearance.weight.normal_()
    return field


def test_embeddings_change_colour_not_density():
    field = _field()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, generator=g) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1)
    s0, c0 = field(x, d, torch.zeros(64, dtype=torch.long))
    s1, c1 = field(x, d, torch.full((64,), 3, dtype=torch.long))
    assert torch.equal(s0, s1)
    assert not torch.allclose(c0, c1)


def test_without_ids_the_mean_embedding_is_used():
    field = _field()
    x = torch.rand(16, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(16, 3), dim=-1)
    _, c = field(x, d)
    with torch.no_grad():
        field.appearance.weight[0] = field.appearance.weight.mean(dim=0)  # image 0 := the mean
    _, c_mean = field(x, d, torch.zeros(16, dtype=torch.long))
    assert torch.allclose(c, c_mean, atol=1e-6)


def test_embeddings_start_at_zero_and_take_no_weight_decay():
    field = NGPField(AABB, ModelConfig(hash_levels=2, hash_log2_size=10, appearance_dim=3), 7)
    assert field.appearance.weight.shape == (7, 3)
    assert bool((field.appearance.weight == 0).all())
    groups = field.parameter_groups(1e-3)
    assert any(p is field.appearance.weight for g in groups if g["weight_decay"] == 0 for p in g["params"])


def test_training_fits_a_darker_exposure_to_its_images(tiny_scene, tmp_path):
    train = tiny_scene.splits["train"]
    dark = train[::2]  # every other training image at 55% exposure
    images = tiny_scene.images.clone()
    images[dark, ..., :3] = (images[dark, ..., :3].float() * 0.55).round().to(torch.uint8)
    scene = replace(tiny_scene, images=images)
    cfg = tiny_config(tmp_path, "unused", steps=1000)  # 150 of them run: the learning rate stays high
    cfg = replace(cfg, model=replace(cfg.model, appearance_dim=4))
    trainer = Trainer(cfg, scene, quiet=True)
    for _ in range(150):
        trainer.train_step()
    field = trainer.field
    assert float(field.appearance.weight.detach().abs().max()) > 0  # the codes moved
    # the same rays rendered with a dark image's code come out darker than with a bright one's
    cams = trainer.cameras
    o, d = (t.reshape(-1, 3) for t in cams.image_rays(int(train[1])))
    with torch.enable_grad():  # the training path (per-ray image ids)
        bright = trainer.renderer.render_rays(o, d, image_ids=torch.full((len(o),), 1))
        darker = trainer.renderer.render_rays(o, d, image_ids=torch.full((len(o),), 0))
    hit = bright.opacity.detach() > 0.5  # the object (colours are premultiplied, no background)
    assert int(hit.sum()) > 50
    ratio = float(darker.rgb.detach()[hit].sum() / bright.rgb.detach()[hit].sum())
    assert ratio < 0.85, ratio


def test_a_code_fitted_on_the_left_half_scores_the_right_half_better(tiny_scene, tmp_path):
    """NeRF-W's held-out protocol (nerf.jobs.appearance_bench): a darker photo's code, fitted on
    its left half with the field frozen, renders its right half closer than the mean code does."""
    from nerf.jobs.appearance_bench import FitSettings, fit_code
    from nerf.jobs.run import TrainedRun

    train = tiny_scene.splits["train"]
    images = tiny_scene.images.clone()
    images[train[::2], ..., :3] = (images[train[::2], ..., :3].float() * 0.55).round().to(torch.uint8)
    scene = replace(tiny_scene, images=images)
    cfg = tiny_config(tmp_path, "unused", steps=1000)
    cfg = replace(cfg, model=replace(cfg.model, appearance_dim=4))
    trainer = Trainer(cfg, scene, quiet=True)
    for _ in range(150):
        trainer.train_step()
    run = TrainedRun(cfg, scene, trainer.renderer.eval(), trainer.step, tmp_path)
    view = int(train[0])  # a darkened photo, scored as if held out
    o, d = (t.reshape(-1, 3) for t in trainer.cameras.image_rays(view))
    photo = scene.image_float(view, scene.render_background).reshape(-1, 3)
    x = torch.arange(len(o)) % scene.image_size(view)[0]
    left, right = x < 16, x >= 16
    before = trainer.field.appearance.weight.detach().clone()
    code = fit_code(run, o, d, left, photo, FitSettings(steps=40, rays=512))
    assert torch.equal(trainer.field.appearance.weight, before) and trainer.field.code_override is None

    def right_error(c):
        trainer.field.code_override = c
        try:
            with torch.no_grad():
                rgb = trainer.renderer.render_rays(o[right], d[right], scene.render_background).rgb
        finally:
            trainer.field.code_override = None
        return float(((rgb - photo[right]) ** 2).mean())

    assert right_error(code) < 0.8 * right_error(before.mean(dim=0))

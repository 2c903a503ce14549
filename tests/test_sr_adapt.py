"""Tests of scene-adaptive super-resolution training (nerf/sr/adapt.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerf.errors import CheckpointError
from nerf.sr.adapt import (
    AdaptConfig,
    _ragan_terms,
    FLAT_RANGE,
    _sample_pairs,
    adapted_sr_path,
    load_adapted_sr,
    save_adapted_sr,
    train_adapted_sr,
)
from nerf.sr.residual import BicubicResidual
from nerf.sr.rrdbnet import RRDBNet
from nerf.sr.upscale import upscale_image

LOSS_TOL = 1e-6  # float32 BCE vs the closed form
EVAL_BORDER = 8  # HR pixels left out of the PSNR: bicubic and the net pad borders differently
GAIN_DB = 0.3  # required PSNR gain over bicubic on held-out images (about 1 dB is typical)
# A quick run: small net, 200 steps of 4 crops (about 8 s on one CPU core).
QUICK = AdaptConfig(num_feat=16, num_block=1, num_grow_ch=8, crop=16, batch=4, steps=200, lr=1e-3)
TINY = AdaptConfig(num_feat=8, num_block=1, num_grow_ch=4, crop=8, batch=2, steps=3)


@pytest.fixture(autouse=True)
def _one_thread():
    """These nets are tiny: with two threads on a shared 2-core machine, thread hand-offs cost
    more than the convs (4x slower measured), so the tests train on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _texture(gen, size):  # [1, 3, size, size]: smooth noise at three octaves
    image = torch.zeros(1, 3, size, size)
    for cells, amplitude in ((8, 0.5), (16, 0.3), (32, 0.2)):
        noise = torch.rand(1, 3, cells, cells, generator=gen)
        image += amplitude * F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    return image.clamp(0.0, 1.0)


def _degrade(hr, scale):  # area downsampling, then a [1, 2, 1] blur
    lr = F.avg_pool2d(hr, scale)
    k = torch.tensor([1.0, 2.0, 1.0]) / 4.0
    kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3).contiguous()
    return F.conv2d(F.pad(lr, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)


def _hwc(t):
    return t[0].permute(1, 2, 0).numpy()


def _pairs(n, size=128, scale=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    hrs = [_texture(gen, size) for _ in range(n)]
    return [_hwc(_degrade(h, scale)) for h in hrs], [_hwc(h) for h in hrs]


def _psnr(a, b):
    return -10.0 * np.log10(np.mean((a.astype(np.float64) - b) ** 2))


def test_untrained_net_is_exact_bicubic():
    lrs, hrs = _pairs(2, size=32)
    net = train_adapted_sr(lrs, hrs, AdaptConfig(**{**TINY.__dict__, "steps": 0}), progress=False)
    assert isinstance(net, BicubicResidual) and isinstance(net.body, RRDBNet)
    x = torch.rand(2, 3, 20, 17)
    with torch.no_grad():
        torch.testing.assert_close(net(x), F.interpolate(x, scale_factor=4.0, mode="bicubic",
                                                         align_corners=False), rtol=0, atol=0)


def test_flat_crops_are_redrawn():
    """Images whose left half is flat white: with flat_keep 0 every crop has detail; with 1
    (uniform crops) many are flat."""
    gen = torch.Generator().manual_seed(0)
    lrs, hrs = [], []
    for _ in range(3):
        lr = torch.rand(3, 32, 64, generator=gen)
        lr[:, :, :32] = 1.0
        lrs.append(lr)
        hrs.append(F.interpolate(lr[None], scale_factor=4.0)[0])

    def flat_fraction(keep):
        lr, hr = _sample_pairs(lrs, hrs, 16, 64, 4, True, torch.Generator().manual_seed(1), keep)
        assert hr.shape == (64, 3, 64, 64)
        spans = (lr.amax(dim=(2, 3)) - lr.amin(dim=(2, 3))).amax(dim=1)
        return float((spans < FLAT_RANGE).float().mean())

    assert flat_fraction(0.0) == 0.0
    assert flat_fraction(1.0) > 0.1


def test_short_training_beats_bicubic_on_held_out_images():
    lrs, hrs = _pairs(6)
    net = train_adapted_sr(lrs[:4], hrs[:4], QUICK, scale=4, seed=0, progress=False)
    b = EVAL_BORDER
    for lr, hr in zip(lrs[4:], hrs[4:]):
        t = torch.from_numpy(lr).permute(2, 0, 1)[None]
        bicubic = _hwc(F.interpolate(t, scale_factor=4.0, mode="bicubic", align_corners=False).clamp(0, 1))
        sr = upscale_image(net, lr, tile=0)
        assert _psnr(sr[b:-b, b:-b], hr[b:-b, b:-b]) > _psnr(bicubic[b:-b, b:-b], hr[b:-b, b:-b]) + GAIN_DB


def _weights(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_training_is_deterministic_for_a_seed():
    lrs, hrs = _pairs(2, size=32)
    a = train_adapted_sr(lrs, hrs, TINY, seed=3, progress=False)
    b = train_adapted_sr(lrs, hrs, TINY, seed=3, progress=False)
    c = train_adapted_sr(lrs, hrs, TINY, seed=4, progress=False)
    assert torch.equal(_weights(a), _weights(b))
    assert not torch.equal(_weights(a), _weights(c))


def test_ragan_terms_match_the_closed_form():
    real, fake = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0.5, 0.1, -0.7])
    softplus = lambda v: np.log1p(np.exp(v))  # BCE with logits: target 1 -> softplus(-v)
    r, f = real.numpy().astype(np.float64), fake.numpy().astype(np.float64)
    real_rel, fake_rel = r - f.mean(), f - r.mean()
    d_loss = 0.5 * (softplus(-real_rel).mean() + softplus(fake_rel).mean())
    g_loss = 0.5 * (softplus(real_rel).mean() + softplus(-fake_rel).mean())
    assert abs(_ragan_terms(real, fake, real_is_one=True).item() - d_loss) < LOSS_TOL
    assert abs(_ragan_terms(real, fake, real_is_one=False).item() - g_loss) < LOSS_TOL


def test_gan_loss_changes_the_generator():
    lrs, hrs = _pairs(2, size=32)
    plain = train_adapted_sr(lrs, hrs, TINY, seed=0, progress=False)
    gan_cfg = AdaptConfig(**{**TINY.__dict__, "use_gan": True, "gan_start": 0, "gan_weight": 1.0})
    gan = train_adapted_sr(lrs, hrs, gan_cfg, seed=0, progress=False)
    assert torch.isfinite(_weights(gan)).all()
    assert not torch.equal(_weights(plain), _weights(gan))


def test_x2_training_runs_and_keeps_the_scale():
    lrs, hrs = _pairs(2, size=32, scale=2)
    net = train_adapted_sr(lrs, hrs, TINY, scale=2, progress=False)
    assert net.scale == 2 and upscale_image(net, lrs[0]).shape == hrs[0].shape


def test_save_and_load_in_a_run_directory(tmp_path):
    lrs, hrs = _pairs(2, size=32)
    net = train_adapted_sr(lrs, hrs, TINY, progress=False)
    path = save_adapted_sr(net, tmp_path / "run")
    assert path == adapted_sr_path(tmp_path / "run", 4) == tmp_path / "run" / "sr" / "adapted_x4.pth"
    assert [p.name for p in path.parent.iterdir()] == ["adapted_x4.pth"]  # no temporary left
    loaded = load_adapted_sr(tmp_path / "run")
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"no adapted x2 .*adapted_x2\.pth"):
        load_adapted_sr(tmp_path / "run", scale=2)


def test_mismatched_pairs_are_rejected():
    lrs, hrs = _pairs(1, size=32)
    with pytest.raises(ValueError, match="pair 0: HR .* is not x2"):
        train_adapted_sr(lrs, hrs, TINY, scale=2, progress=False)
    with pytest.raises(ValueError, match="equal, non-zero numbers"):
        train_adapted_sr(lrs, hrs + hrs, TINY, progress=False)


def test_plain_rrdbnet_in_the_run_directory_is_refused(tmp_path):
    """A net saved before adapted nets became bicubic-residual is not silently misused."""
    from nerf.errors import WeightsError
    from nerf.sr.weights import save_sr_weights

    save_sr_weights(RRDBNet(3, 3, 4, num_feat=8, num_block=1, num_grow_ch=4),
                    adapted_sr_path(tmp_path / "run", 4))
    with pytest.raises(WeightsError, match="expected a bicubic-residual RRDBNet.*delete the file"):
        load_adapted_sr(tmp_path / "run")

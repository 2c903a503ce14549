"""Tests of tiled super-resolution inference (nerf/sr/upscale.py) and tools/upscale.py."""

import importlib.util
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from nerf.errors import ConfigError
from nerf.export.video import write_video
from nerf.sr.compact import SRVGGNetCompact
from nerf.sr.rrdbnet import RRDBNet
from nerf.sr.upscale import MAX_AUTO_TILE_PAD, auto_tile_pad, upscale_frames, upscale_image
from nerf.sr.weights import save_sr_weights

TILE_TOL = 1e-5  # tiled vs untiled, float32: only the conv summation order may differ
FP16_TOL = 2e-2  # float16 autocast vs float32 on [0, 1] outputs of a small net
NEAREST_MARGIN_DB = 0.5  # required PSNR gain of the real x4 net over nearest upscaling
ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared"
REAL_WEIGHTS = SHARED / "weights" / "realesr-animevideov3.pth"
LEGO_VIEW = SHARED / "data" / "nerf_synthetic" / "lego" / "test" / "r_0.png"


def _in_range(net):
    """A random net whose outputs sit inside (0, 1), so clamping hides no tiling error."""
    torch.manual_seed(0)
    net = net.eval()
    if isinstance(net, RRDBNet):
        with torch.no_grad():
            net.conv_last.weight.mul_(5.0)
            net.conv_last.bias.fill_(0.5)
    return net


# (net, image size, tile); sizes are not multiples of the tile or of the unshuffle factor
NETS = {
    "rrdb_x4": (lambda: RRDBNet(3, 3, 4, num_feat=8, num_block=1, num_grow_ch=4), (41, 35), 12),
    "rrdb_x2": (lambda: RRDBNet(3, 3, 2, num_feat=8, num_block=1, num_grow_ch=4), (71, 61), 16),
    "rrdb_x1": (lambda: RRDBNet(3, 3, 1, num_feat=8, num_block=1, num_grow_ch=4), (139, 117), 32),
    "compact_x4": (lambda: SRVGGNetCompact(3, 3, num_feat=8, num_conv=3, scale=4), (25, 19), 8),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_tiled_matches_untiled(name):
    factory, (h, w), tile = NETS[name]
    net = _in_range(factory())
    image = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    pad = net.receptive_radius
    assert min(h, w) > tile + pad  # the first tile's context does not cover the whole image
    whole = upscale_image(net, image, tile=0)
    assert whole.shape == (net.scale * h, net.scale * w, 3) and whole.dtype == np.float32
    assert np.mean((whole > 0) & (whole < 1)) > 0.9
    tiled = upscale_image(net, image, tile=tile, tile_pad=pad)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=TILE_TOL)
    # Negative control: too little context must show, or this test could not catch a bug.
    assert np.abs(upscale_image(net, image, tile=tile, tile_pad=1) - whole).max() > 10 * TILE_TOL


def test_auto_tile_pad_is_exact_for_small_nets_and_capped_for_big_ones():
    small = _in_range(RRDBNet(3, 3, 4, num_feat=8, num_block=1, num_grow_ch=4))
    assert auto_tile_pad(small) == small.receptive_radius
    image = np.random.default_rng(1).random((75, 61, 3), dtype=np.float32)
    np.testing.assert_allclose(upscale_image(small, image, tile=16), upscale_image(small, image, tile=0),
                               rtol=0, atol=TILE_TOL)
    assert auto_tile_pad(RRDBNet(num_block=23)) == MAX_AUTO_TILE_PAD


def test_pre_pad_and_odd_sizes_keep_the_output_size():
    net = _in_range(RRDBNet(3, 3, 2, num_feat=8, num_block=0))  # radius 8: windows stay small
    image = np.random.default_rng(2).random((91, 87, 3), dtype=np.float32)
    whole = upscale_image(net, image, tile=0, pre_pad=5)
    assert whole.shape == (182, 174, 3)
    tiled = upscale_image(net, image, tile=16, tile_pad=net.receptive_radius, pre_pad=5)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=TILE_TOL)


def test_alpha_goes_through_the_net_as_grey():
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, scale=2).eval()
    rgba = np.random.default_rng(3).random((20, 18, 4), dtype=np.float32)
    out = upscale_image(net, rgba, tile=0)
    assert out.shape == (40, 36, 4)
    np.testing.assert_allclose(out[..., :3], upscale_image(net, rgba[..., :3], tile=0), rtol=0, atol=TILE_TOL)
    grey = upscale_image(net, np.repeat(rgba[..., 3:], 3, axis=-1), tile=0).mean(-1)
    np.testing.assert_allclose(out[..., 3], grey, rtol=0, atol=TILE_TOL)


def test_upscale_frames_batches_but_matches_single_images():
    net = _in_range(SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, scale=2))
    rng = np.random.default_rng(4)
    frames = [rng.random(shape, dtype=np.float32) for shape in [(16, 20, 3)] * 3 + [(12, 10, 3)] * 2]
    outs = list(upscale_frames(net, iter(frames), tile=8, batch_size=2, progress=False))
    assert len(outs) == len(frames)
    for frame, out in zip(frames, outs):
        np.testing.assert_allclose(out, upscale_image(net, frame, tile=0), rtol=0, atol=TILE_TOL)


def test_bad_arguments_are_reported():
    net = SRVGGNetCompact(3, 3, num_feat=4, num_conv=1, scale=2).eval()
    with pytest.raises(ConfigError, match="CUDA"):
        upscale_image(net, np.zeros((4, 4, 3), np.float32), half=True)
    with pytest.raises(ValueError, match="2 channels"):
        upscale_image(net, np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="float image"):
        upscale_image(net, np.zeros((4, 4, 3), np.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_half_precision_on_cuda_is_close_to_float():
    net = _in_range(RRDBNet(3, 3, 4, num_feat=16, num_block=2, num_grow_ch=8)).cuda()
    image = np.random.default_rng(5).random((64, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(upscale_image(net, image, tile=32, half=True),
                               upscale_image(net, image, tile=32), rtol=0, atol=FP16_TOL)


def _psnr(a, b):
    return -10.0 * np.log10(np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.skipif(not (REAL_WEIGHTS.is_file() and LEGO_VIEW.is_file()),
                    reason=f"needs {REAL_WEIGHTS} and {LEGO_VIEW}")
def test_real_weights_upscale_a_real_image_better_than_nearest():
    from nerf.sr.weights import load_sr_weights

    rgba = iio.imread(LEGO_VIEW).astype(np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])  # on white, as the dataset does
    size = rgb.shape[0] // 4
    low = rgb.reshape(size, 4, size, 4, 3).mean(axis=(1, 3))  # area downsampling by 4
    model = load_sr_weights(REAL_WEIGHTS, expected_scale=4)
    sr = upscale_image(model, low, tile=128)
    assert sr.shape == rgb.shape
    nearest = low.repeat(4, axis=0).repeat(4, axis=1)
    # A GAN-trained anime model is no PSNR champion, but it must clearly beat pixel copies.
    assert _psnr(sr, rgb) > _psnr(nearest, rgb) + NEAREST_MARGIN_DB


def _tool():
    spec = importlib.util.spec_from_file_location("upscale_tool", ROOT / "tools" / "upscale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_exits_2_on_missing_input_and_unknown_layout(tmp_path, capsys):
    tool = _tool()
    weights = save_sr_weights(SRVGGNetCompact(3, 3, 4, 1, 2), tmp_path / "net.pth", "compact")
    with pytest.raises(SystemExit) as info:
        tool.main([str(tmp_path / "absent.png"), "--weights", str(weights)])
    assert info.value.code == 2 and "absent.png: input not found" in capsys.readouterr().err
    iio.imwrite(tmp_path / "in.png", np.zeros((6, 5, 3), np.uint8))
    torch.save({"classifier.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(SystemExit) as info:
        tool.main([str(tmp_path / "in.png"), "--weights", str(tmp_path / "other.pth")])
    assert info.value.code == 2 and "unknown super-resolution weight layout" in capsys.readouterr().err


def test_cli_upscales_an_image_a_folder_and_a_video(tmp_path):
    tool = _tool()
    net = _in_range(SRVGGNetCompact(3, 3, num_feat=4, num_conv=1, scale=2))
    weights = save_sr_weights(net, tmp_path / "net.pth", "compact")
    rng = np.random.default_rng(6)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        iio.imwrite(folder / f"f{i}.png", rng.integers(0, 256, (10, 14, 3), dtype=np.uint8))

    tool.main([str(folder), "--weights", str(weights), "--tile", "4"])
    out_dir = tmp_path / "frames_x2"
    assert sorted(p.name for p in out_dir.iterdir()) == ["f0.png", "f1.png"]
    expected = upscale_image(net, iio.imread(folder / "f1.png").astype(np.float32) / 255.0)
    written = iio.imread(out_dir / "f1.png").astype(np.float32)
    assert written.shape == (20, 28, 3)
    assert np.abs(written - expected * 255.0).max() <= 0.5 + 1e-3  # rounding to uint8 only

    tool.main([str(folder / "f0.png"), "--weights", str(weights), "--out", str(tmp_path / "one.png")])
    assert iio.imread(tmp_path / "one.png").shape == (20, 28, 3)

    video = tmp_path / "clip.mp4"
    write_video(video, [rng.random((16, 24, 3), dtype=np.float32) for _ in range(3)], fps=5)
    tool.main([str(video), "--weights", str(weights)])
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "clip_x2.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (48, 32) and meta["fps"] == 5
    assert len(list(reader)) == 3

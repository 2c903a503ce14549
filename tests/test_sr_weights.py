"""Tests of super-resolution weight layouts (nerf/sr/weights.py, rrdbnet.py, compact.py)."""

from pathlib import Path

import pytest
import torch

from nerf.errors import WeightsError
from nerf.sr.compact import SRVGGNetCompact
from nerf.sr.residual import BicubicResidual
from nerf.sr.rrdbnet import RRDBNet
from nerf.sr.weights import LAYOUTS, detect_layout, load_sr_weights, save_sr_weights

EXACT = dict(rtol=0.0, atol=0.0)  # same weights, same ops, same input: bit-identical outputs
REAL_WEIGHTS = Path(__file__).parents[1].parent / "shared" / "weights" / "realesr-animevideov3.pth"

# (net factory, layout): small random nets covering every layout, scale and channel count
CASES = {
    "basicsr_x4": (lambda: RRDBNet(3, 3, 4, num_feat=8, num_block=2, num_grow_ch=4), "basicsr"),
    "basicsr_x2": (lambda: RRDBNet(3, 3, 2, num_feat=8, num_block=1, num_grow_ch=4), "basicsr"),
    "basicsr_x1": (lambda: RRDBNet(3, 3, 1, num_feat=8, num_block=1, num_grow_ch=4), "basicsr"),
    "basicsr_grey_x2": (lambda: RRDBNet(1, 1, 2, num_feat=6, num_block=1, num_grow_ch=3), "basicsr"),
    "esrgan_x4": (lambda: RRDBNet(3, 3, 4, num_feat=8, num_block=2, num_grow_ch=4), "esrgan"),
    "esrgan_old_x4": (lambda: RRDBNet(3, 3, 4, num_feat=8, num_block=3, num_grow_ch=4), "esrgan_old"),
    "compact_x4": (lambda: SRVGGNetCompact(3, 3, num_feat=8, num_conv=3, scale=4), "compact"),
    "compact_x2": (lambda: SRVGGNetCompact(3, 3, num_feat=6, num_conv=1, scale=2), "compact"),
    "residual_basicsr_x4": (lambda: BicubicResidual(RRDBNet(3, 3, 4, num_feat=8, num_block=1,
                                                            num_grow_ch=4)), "basicsr"),
    "residual_compact_x2": (lambda: BicubicResidual(SRVGGNetCompact(3, 3, num_feat=6, num_conv=1,
                                                                    scale=2)), "compact"),
}
HYPER = ("num_in_ch", "num_out_ch", "num_feat", "scale", "num_block", "num_grow_ch", "num_conv")


def _random_net(factory):
    torch.manual_seed(0)
    net = factory().eval()
    with torch.no_grad():  # make every tensor distinct, so a swapped key changes the output
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("case", sorted(CASES))
def test_layout_round_trip(case, tmp_path):
    factory, layout = CASES[case]
    net = _random_net(factory)
    path = save_sr_weights(net, tmp_path / f"{case}.pth", layout=layout)
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed away
    loaded = load_sr_weights(path)
    assert type(loaded) is type(net)
    inner = net.body if isinstance(net, BicubicResidual) else net
    loaded_inner = loaded.body if isinstance(loaded, BicubicResidual) else loaded
    assert type(loaded_inner) is type(inner)
    for name in HYPER:
        assert getattr(loaded_inner, name, None) == getattr(inner, name, None), name
    x = torch.rand(2, inner.num_in_ch, 12, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), **EXACT)


def _expected_old_keys(num_block):
    """ESRGAN's old sequential names, written out from its conversion script's scheme."""
    keys = {f"model.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")}
    keys |= {f"model.1.sub.{num_block}.{p}" for p in ("weight", "bias")}
    for b in range(num_block):
        for r in (1, 2, 3):
            for c in range(1, 6):
                keys |= {f"model.1.sub.{b}.RDB{r}.conv{c}.0.{p}" for p in ("weight", "bias")}
    return keys


def test_written_key_names_follow_each_layout(tmp_path):
    net = _random_net(CASES["esrgan_old_x4"][0])
    old = torch.load(save_sr_weights(net, tmp_path / "old.pth", "esrgan_old"), weights_only=True)
    assert set(old) == _expected_old_keys(3)
    esrgan = torch.load(save_sr_weights(net, tmp_path / "e.pth", "esrgan"), weights_only=True)
    for key in ("conv_first.weight", "RRDB_trunk.2.RDB3.conv5.bias", "trunk_conv.weight",
                "upconv1.weight", "upconv2.bias", "HRconv.weight", "conv_last.bias"):
        assert key in esrgan
    basic = torch.load(save_sr_weights(net, tmp_path / "b.pth", "basicsr"), weights_only=True)
    assert set(basic) == {"params"} and "body.2.rdb3.conv5.bias" in basic["params"]
    torch.testing.assert_close(old["model.1.sub.3.weight"], esrgan["trunk_conv.weight"], **EXACT)
    torch.testing.assert_close(old["model.6.bias"], basic["params"]["conv_up2.bias"], **EXACT)


def test_prefers_params_ema_and_strips_module_prefix(tmp_path):
    plain, ema = _random_net(CASES["basicsr_x4"][0]), _random_net(CASES["basicsr_x4"][0])
    with torch.no_grad():
        ema.conv_last.bias.add_(1.0)
    wrapped = {
        "params": plain.state_dict(),
        "params_ema": {f"module.{k}": v for k, v in ema.state_dict().items()},
    }
    torch.save(wrapped, tmp_path / "both.pth")
    loaded = load_sr_weights(tmp_path / "both.pth")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ema(x), **EXACT)


def test_unknown_layout_lists_keys_and_known_layouts(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.stem.weight": torch.zeros(4, 3, 3, 3), "head.bias": torch.zeros(4)}, path)
    with pytest.raises(WeightsError) as info:
        load_sr_weights(path)
    message = str(info.value)
    assert "mystery.pth" in message and "encoder.stem.weight" in message
    for layout in LAYOUTS:
        assert layout in message


def test_missing_tensor_and_missing_file_and_non_checkpoint(tmp_path):
    net = _random_net(CASES["basicsr_x4"][0])
    state = net.state_dict()
    del state["body.1.rdb2.conv3.bias"]
    torch.save({"params_ema": state}, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"broken\.pth.*body\.1\.rdb2\.conv3\.bias"):
        load_sr_weights(tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match="nowhere.pth.*not found"):
        load_sr_weights(tmp_path / "nowhere.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match=r"notes\.pth: not a torch checkpoint of plain tensors"):
        load_sr_weights(tmp_path / "notes.pth")
    torch.save(torch.nn.Conv2d(3, 3, 3), tmp_path / "pickled.pth")  # a whole module, not tensors
    with pytest.raises(WeightsError, match=r"pickled\.pth: not a torch checkpoint of plain tensors"):
        load_sr_weights(tmp_path / "pickled.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth: not a readable torch checkpoint"):
        load_sr_weights(tmp_path / "empty.pth")


def test_save_refuses_layouts_that_cannot_hold_the_net(tmp_path):
    with pytest.raises(WeightsError, match="x4 nets; this one is x2"):
        save_sr_weights(_random_net(CASES["basicsr_x2"][0]), tmp_path / "a.pth", "esrgan_old")
    with pytest.raises(WeightsError, match="RRDBNet cannot be written in the compact layout"):
        save_sr_weights(_random_net(CASES["basicsr_x4"][0]), tmp_path / "b.pth", "compact")
    with pytest.raises(WeightsError, match="unknown layout 'onnx'"):
        save_sr_weights(_random_net(CASES["basicsr_x4"][0]), tmp_path / "c.pth", "onnx")
    with pytest.raises(WeightsError, match="bicubic-residual net is written in the basicsr or compact"):
        save_sr_weights(_random_net(CASES["residual_basicsr_x4"][0]), tmp_path / "d.pth", "esrgan")
    assert not list(tmp_path.iterdir())


def test_unknown_residual_marker_is_an_error(tmp_path):
    path = save_sr_weights(_random_net(CASES["residual_basicsr_x4"][0]), tmp_path / "r.pth")
    payload = torch.load(path, weights_only=True)
    payload["residual"] = "lanczos"
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="unknown 'residual' entry 'lanczos'"):
        load_sr_weights(path)


def test_detect_layout_returns_none_for_an_unrelated_state_dict():
    assert detect_layout(torch.nn.Linear(2, 2).state_dict()) is None


@pytest.mark.skipif(not REAL_WEIGHTS.is_file(), reason=f"{REAL_WEIGHTS} not present")
def test_real_animevideov3_weights_load_with_scale_check():
    # Real-ESRGAN's published definition: SRVGGNetCompact(3, 3, 64, num_conv=16, upscale=4, prelu)
    model = load_sr_weights(REAL_WEIGHTS, expected_scale=4)
    assert isinstance(model, SRVGGNetCompact)
    assert (model.num_in_ch, model.num_feat, model.num_conv, model.scale) == (3, 64, 16, 4)
    assert not model.training
    with pytest.raises(WeightsError, match=r"realesr-animevideov3\.pth.*expected a x2.*x4"):
        load_sr_weights(REAL_WEIGHTS, expected_scale=2)

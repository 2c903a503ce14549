"""Super-resolution weight files: recognise their key layout, build the net, load strictly.

Vocabulary: a "layout" is a naming scheme for the same tensors. Four are known:

    basicsr     BasicSR / Real-ESRGAN RRDBNet: conv_first, body.N.rdb1.conv1, conv_body,
                conv_up1, conv_up2, conv_hr, conv_last (optionally under "params_ema" or
                "params", preferring params_ema, and optionally with a DataParallel "module."
                prefix). Scales 1 and 2 pixel-unshuffle the input, which shows as conv_first
                having 16x or 4x the output channels as input channels.
    esrgan      the original ESRGAN repository: conv_first, RRDB_trunk.N.RDB1.conv1,
                trunk_conv, upconv1, upconv2, HRconv, conv_last (x4 only).
    esrgan_old  ESRGAN's older sequential arch: model.0, model.1.sub.N.RDB1.conv1.0,
                model.1.sub.{num_block}, model.3, model.6, model.8, model.10 (x4 only).
    compact     Real-ESRGAN's SRVGGNetCompact: body.0 (conv), body.1 (PReLU), ..., last conv.

Every hyper-parameter (channels, features, blocks, growth, scale) is read from tensor shapes,
so no side file is needed; the state dict is then loaded with strict=True. A file with the
top-level entry `"residual": "bicubic"` (written for a BicubicResidual, see residual.py) holds
the body of a net that adds bicubic upsampling; it loads back as that wrapper.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from nerf.errors import WeightsError
from nerf.sr.compact import SRVGGNetCompact
from nerf.sr.residual import RESIDUAL_BICUBIC, RESIDUAL_KEY, BicubicResidual
from nerf.sr.rrdbnet import SUPPORTED_SCALES, RRDBNet

LAYOUTS = {
    "basicsr": "BasicSR/Real-ESRGAN RRDBNet (conv_first, body.N.rdb1.conv1, conv_body, conv_up1)",
    "esrgan": "original ESRGAN (conv_first, RRDB_trunk.N.RDB1.conv1, trunk_conv, upconv1, HRconv)",
    "esrgan_old": "old ESRGAN sequential (model.0, model.1.sub.N.RDB1.conv1.0, model.3, model.10)",
    "compact": "Real-ESRGAN SRVGGNetCompact (body.0 conv, body.1 PReLU, ..., last conv)",
}
WRAPPER_KEYS = ("params_ema", "params", "state_dict")  # nesting keys tried in this order
KEY_SAMPLE = 8  # keys quoted in an unknown-layout error

# (pattern in the file's layout, replacement in BasicSR names); applied to every key.
_ESRGAN_TO_BASICSR = [
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.(conv\d)\.", r"body.\1.rdb\2.\3."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv1\.", "conv_up1."),
    (r"^upconv2\.", "conv_up2."),
    (r"^HRconv\.", "conv_hr."),
]
_BASICSR_TO_ESRGAN = [
    (r"^body\.(\d+)\.rdb(\d)\.(conv\d)\.", r"RRDB_trunk.\1.RDB\2.\3."),
    (r"^conv_body\.", "trunk_conv."),
    (r"^conv_up1\.", "upconv1."),
    (r"^conv_up2\.", "upconv2."),
    (r"^conv_hr\.", "HRconv."),
]
_OLD_SINGLE = {  # BasicSR name -> index in the old x4 sequential model
    "conv_first": "0", "conv_up1": "3", "conv_up2": "6", "conv_hr": "8", "conv_last": "10",
}


def _rename(state: Mapping[str, Tensor], rules: list[tuple[str, str]]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key, n = re.subn(pattern, replacement, key)
            if n:
                break
        out[key] = value
    return out


def _old_to_basicsr(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    num_block = _count_blocks(state, r"^model\.1\.sub\.(\d+)\.RDB")
    rules = [(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.(conv\d)\.0\.", r"body.\1.rdb\2.\3.")]
    rules.append((rf"^model\.1\.sub\.{num_block}\.", "conv_body."))
    rules += [(rf"^model\.{index}\.", f"{name}.") for name, index in _OLD_SINGLE.items()]
    return _rename(state, rules)


def _basicsr_to_old(state: Mapping[str, Tensor], num_block: int) -> dict[str, Tensor]:
    rules = [(r"^body\.(\d+)\.rdb(\d)\.(conv\d)\.", r"model.1.sub.\1.RDB\2.\3.0.")]
    rules.append((r"^conv_body\.", f"model.1.sub.{num_block}."))
    rules += [(rf"^{name}\.", f"model.{index}.") for name, index in _OLD_SINGLE.items()]
    return _rename(state, rules)


def _count_blocks(state: Mapping[str, Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    """Find the tensor dict inside a checkpoint: nested wrappers, then a `module.` prefix."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        sample = sorted(map(str, bad))[:KEY_SAMPLE]
        raise WeightsError(f"{path}: entries that are not tensors: {sample}")
    if all(k.startswith("module.") for k in obj):
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def detect_layout(state: Mapping[str, Tensor]) -> str | None:
    """Name the layout of a (unwrapped) state dict, or None when it is none of LAYOUTS.

    Args:
        state: parameter name -> tensor.

    Returns:
        one of LAYOUTS' keys, or None.
    """
    if "conv_first.weight" in state and "conv_body.weight" in state:
        return "basicsr"
    if "conv_first.weight" in state and "trunk_conv.weight" in state:
        return "esrgan"
    if "model.0.weight" in state and "model.10.weight" in state and any(
        k.startswith("model.1.sub.") for k in state
    ):
        return "esrgan_old"
    first, second = state.get("body.0.weight"), state.get("body.1.weight")
    if first is not None and first.ndim == 4 and second is not None and second.ndim == 1:
        return "compact"
    return None


def _rrdbnet_from_basicsr(state: Mapping[str, Tensor], layout: str) -> RRDBNet:
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    num_block = _count_blocks(state, r"^body\.(\d+)\.rdb")
    grow = state.get("body.0.rdb1.conv1.weight")
    num_out = last.shape[0]
    scale, num_in = 4, first.shape[1]
    if layout == "basicsr":
        # BasicSR feeds pixel-unshuffled input for x2 / x1; in == out channels is assumed.
        for candidate in SUPPORTED_SCALES:
            if first.shape[1] == num_out * (4 // candidate) ** 2:
                scale, num_in = candidate, num_out
                break
    return RRDBNet(
        num_in_ch=num_in,
        num_out_ch=num_out,
        scale=scale,
        num_feat=first.shape[0],
        num_block=num_block,
        num_grow_ch=grow.shape[0] if grow is not None else 32,
    )


def _compact_from_state(state: Mapping[str, Tensor], path: Path) -> SRVGGNetCompact:
    n_layers = _count_blocks(state, r"^body\.(\d+)\.")
    first, last = state["body.0.weight"], state.get(f"body.{n_layers - 1}.weight")
    if last is None or last.ndim != 4 or n_layers % 2 == 0:
        raise WeightsError(
            f"{path}: compact layout expects body.0 (conv), body.1 (PReLU), ..., a last conv; "
            f"body.{n_layers - 1} is not a conv"
        )
    num_in = first.shape[1]
    scale = math.isqrt(last.shape[0] // num_in)
    if scale * scale * num_in != last.shape[0]:
        raise WeightsError(
            f"{path}: compact net's last conv has {last.shape[0]} output channels, which is not "
            f"{num_in} channels x an integer scale squared"
        )
    return SRVGGNetCompact(num_in, num_in, first.shape[0], (n_layers - 3) // 2, scale)


def _check_keys(model: nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """Raise one readable WeightsError for missing, unexpected or misshapen tensors."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{k} {tuple(state[k].shape)} (needs {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    groups = (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
    for label, items in groups:
        if items:
            problems.append(f"{len(items)} {label}: {', '.join(items[:KEY_SAMPLE])}")
    if problems:
        raise WeightsError(f"{where}: {'; '.join(problems)}")


def model_from_state_dict(
    state: Mapping[str, Tensor], source: str | Path = "<state dict>"
) -> nn.Module:
    """Build the matching net from an unwrapped state dict and load it strictly.

    Args:
        state: parameter name -> tensor, in any of LAYOUTS.
        source: the file name quoted in errors.

    Returns:
        an RRDBNet or SRVGGNetCompact on the CPU, in eval mode.
    """
    path = Path(source)
    layout = detect_layout(state)
    if layout is None:
        sample = sorted(state)[:KEY_SAMPLE]
        known = "; ".join(f"{name}: {desc}" for name, desc in LAYOUTS.items())
        raise WeightsError(
            f"{path}: unknown super-resolution weight layout; found {len(state)} keys such as "
            f"{sample}; known layouts are {known}"
        )
    if layout == "compact":
        model: nn.Module = _compact_from_state(state, path)
    else:
        if layout == "esrgan":
            state = _rename(state, _ESRGAN_TO_BASICSR)
        elif layout == "esrgan_old":
            state = _old_to_basicsr(state)
        if "conv_last.weight" not in state:
            raise WeightsError(f"{path}: {layout} layout without conv_last (the output conv)")
        model = _rrdbnet_from_basicsr(state, layout)
    _check_keys(model, state, f"{path}: {layout} layout as {model.__class__.__name__}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_sr_weights(
    path: str | Path,
    device: str | torch.device = "cpu",
    expected_scale: int | None = None,
) -> nn.Module:
    """Load a super-resolution weight file in any known layout.

    Args:
        path: a torch checkpoint (.pth); read with weights_only=True (no code runs).
        device: where the returned net lives.
        expected_scale: when given, a net of another scale is an error.

    Returns:
        an RRDBNet, SRVGGNetCompact or BicubicResidual in eval mode with `.scale` set.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: super-resolution weight file not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: not a torch checkpoint of plain tensors (a pickled model object or another "
            "file type; save the model's state_dict instead)"
        ) from exc
    except Exception as exc:  # torch raises many types for corrupt / non-torch files
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise WeightsError(
            f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {first_line})"
        ) from exc
    model = model_from_state_dict(_unwrap(raw, path), path)
    residual = raw.get(RESIDUAL_KEY) if isinstance(raw, Mapping) else None
    if residual is not None:
        if residual != RESIDUAL_BICUBIC:
            raise WeightsError(f"{path}: unknown {RESIDUAL_KEY!r} entry {residual!r} (known: "
                               f"{RESIDUAL_BICUBIC!r})")
        model = BicubicResidual(model).eval()
    if expected_scale is not None and model.scale != expected_scale:
        raise WeightsError(
            f"{path}: expected a x{expected_scale} network, but these weights are a x{model.scale} "
            f"{model.__class__.__name__}"
        )
    return model.to(device)


def save_sr_weights(model: nn.Module, path: str | Path, layout: str = "basicsr") -> Path:
    """Write a net's weights in one of LAYOUTS, atomically (tmp file + rename).

    Args:
        model: an RRDBNet (layouts basicsr, esrgan, esrgan_old; the last two only at x4), an
            SRVGGNetCompact (layout compact), or a BicubicResidual around either (basicsr or
            compact, marked by a top-level "residual": "bicubic" entry).
        path: destination file; parent folders are created.
        layout: one of LAYOUTS. basicsr and compact are nested under "params" as in
            Real-ESRGAN's releases; the ESRGAN layouts are flat, as in ESRGAN's releases.

    Returns:
        the path written.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise WeightsError(f"{path}: unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    residual = isinstance(model, BicubicResidual)
    if residual:
        if layout not in ("basicsr", "compact"):
            raise WeightsError(f"{path}: a bicubic-residual net is written in the basicsr or compact "
                               f"layout (they nest the tensors under 'params'), not {layout}")
        model = model.body
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if isinstance(model, SRVGGNetCompact) != (layout == "compact"):
        raise WeightsError(
            f"{path}: a {model.__class__.__name__} cannot be written in the {layout} layout"
        )
    if layout in ("esrgan", "esrgan_old") and model.scale != 4:
        raise WeightsError(
            f"{path}: the {layout} layout only holds x4 nets; this one is x{model.scale}"
        )
    if layout == "esrgan":
        payload: dict = _rename(state, _BASICSR_TO_ESRGAN)
    elif layout == "esrgan_old":
        payload = _basicsr_to_old(state, model.num_block)
    else:
        payload = {"params": state}
    if residual:
        payload[RESIDUAL_KEY] = RESIDUAL_BICUBIC
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path

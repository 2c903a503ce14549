"""nerfstudio's dataparser_transforms.json: the map from a scene's data frame to the trained frame.

nerfstudio writes, beside each run, `{"transform": T (3x4), "scale": s}` and trains in the frame
x' = s (T[:, :3] x + T[:, 3]) of the points x of its data files; its camera_path.json files
(viewer, Blender add-on) are written in that trained frame. Every run of ours writes the same
file for our normalisation (`Scene.transform`, a similarity x' = s R x + t, so T = [R | t / s]),
so paths, crops and point clouds move between the two tools by these two numbers. The data frame
is the world frame of the files we read (the transforms.json frame; COLMAP's own world frame for
a COLMAP model, which nerfstudio's colmap importer would first permute to z-up).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from nerf.errors import ExportError
from nerf.export.mesh_io import atomic_write_bytes

FILE_NAME = "dataparser_transforms.json"
SIMILARITY_TOL = 1e-4  # max |R^T R - I| of a stored rotation (written as float64 text)


def to_dataparser_transforms(transform: Tensor) -> dict:  # transform [4, 4] similarity
    """nerfstudio's {"transform": 3x4, "scale": s} of a similarity x' = s R x + t."""
    m = torch.as_tensor(transform, dtype=torch.float64)
    scale = float(torch.linalg.det(m[:3, :3]).abs() ** (1.0 / 3.0))
    top = torch.cat([m[:3, :3] / scale, m[:3, 3:] / scale], dim=1)
    return {"transform": top.tolist(), "scale": scale}


def from_dataparser_transforms(data: dict, where: str) -> Tensor:  # -> [4, 4] float64
    """The similarity x' = s (R x + t) of a dataparser_transforms dict; errors name `where`."""
    try:
        top = torch.tensor(data["transform"], dtype=torch.float64)
        scale = float(data["scale"])
    except KeyError as exc:
        raise ExportError(f"{where}: missing {exc.args[0]!r}") from exc
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ExportError(f"{where}: 'transform' must be 3x4 numbers and 'scale' a number") from exc
    if top.shape != (3, 4) or not bool(torch.isfinite(top).all()):
        raise ExportError(f"{where}: 'transform' must be 3x4 finite numbers, got shape {tuple(top.shape)}")
    if not (math.isfinite(scale) and scale > 0):
        raise ExportError(f"{where}: 'scale' must be a positive number, got {scale}")
    rot = top[:, :3]
    err = float((rot.T @ rot - torch.eye(3, dtype=torch.float64)).abs().max())
    if err > SIMILARITY_TOL or float(torch.linalg.det(rot)) <= 0:
        raise ExportError(f"{where}: the 3x3 part of 'transform' is not a rotation (|R^T R - I| = {err:.3g})")
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :] = scale * top
    return out


def write_dataparser_transforms(run_dir: str | Path, transform: Tensor) -> Path:
    """Write <run_dir>/dataparser_transforms.json (atomically) for the scene's `transform`."""
    text = json.dumps(to_dataparser_transforms(transform), indent=4)
    return atomic_write_bytes(Path(run_dir) / FILE_NAME, text.encode())


def read_json_object(path: str | Path, what: str, expected: str) -> dict:
    """The JSON object in `path`; an ExportError naming the file (`what` it should be) when it is
    missing, unreadable, not JSON, or not an object (`expected` says what it should hold)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: {what} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: cannot read {what} ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object with {expected}")
    return data


def read_dataparser_transforms(path: str | Path) -> Tensor:  # -> [4, 4] float64
    """The similarity stored in a dataparser_transforms.json (ours or nerfstudio's)."""
    data = read_json_object(path, "dataparser transforms file", "'transform' and 'scale'")
    return from_dataparser_transforms(data, str(path))

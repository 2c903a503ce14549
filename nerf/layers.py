"""The layer order of the package: the one place that says which room may import which.

A room is a subpackage (`nerf.datasets`) or a top-level module (`nerf.cameras`). A module may
import modules of its own room and of rooms in *lower* layers, never a room of its own layer or
of a higher one. `tests/test_layers.py` reads every import of the package (with `ast`, lazy
imports inside functions included) and fails on an import against this order and on any import
circle between modules. docs/ARCHITECTURE.md describes the rooms.

Reading from the bottom up: errors and conventions; backend availability, the malloc
settings, rotations (pure math), 8-bit frames, the command-line runner and atomic file writes;
configs, cameras, torch.distributed helpers, evaluation metrics and what a job does first; scene
loading, encodings and ray sampling; the fields; rendering; the four libraries a command
combines (training, export, super-resolution, structure from motion); `nerf.jobs`, the only
layer that reaches across training, export and super-resolution; and on top the browser viewer,
which drives those jobs from a web page.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    ("nerf", "nerf.errors", "nerf.conventions", "nerf.layers"),
    ("nerf.backends", "nerf.allocator", "nerf.denormals", "nerf.rotations", "nerf.frames", "nerf.cli", "nerf.atomic"),
    ("nerf.config", "nerf.cameras", "nerf.distributed", "nerf.evaluation", "nerf.process"),
    ("nerf.datasets", "nerf.encodings", "nerf.sampling"),
    ("nerf.fields",),
    ("nerf.render",),
    ("nerf.train", "nerf.export", "nerf.sr", "nerf.sfm"),
    ("nerf.jobs",),
    ("nerf.viewer",),
)


def room_of(module: str) -> str:
    """The room a dotted module name belongs to (its longest prefix listed in LAYERS)."""
    if module == "nerf":
        return module
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        name = ".".join(parts[:n])
        if any(name in layer for layer in LAYERS):
            return name
    raise KeyError(f"{module}: in no room of nerf.layers.LAYERS")


def layer_of(room: str) -> int:
    """Index of the layer that lists `room` (0 = the bottom)."""
    for i, layer in enumerate(LAYERS):
        if room in layer:
            return i
    raise KeyError(f"{room}: not listed in nerf.layers.LAYERS")

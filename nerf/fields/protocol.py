"""What the renderer, the trainer and the mesh job need of a radiance field.

Every field answers the same calls, so no caller probes attributes or branches on the model's
name. `sampling` says how rays are sampled for it:

    "occupancy"     samples marched through the renderer's occupancy grid and composited in
                    one pass (the hash-grid field); the field itself is the module the
                    gradient pass calls, so DistributedDataParallel can wrap it, and the
                    trainer adapts its ray count to a target number of samples per step.
    "hierarchical"  stratified coarse samples, then importance samples of the fine network
                    (original NeRF): the field also has `coarse` and `fine` members, which the
                    hierarchical renderer calls directly.

An "occupancy" field also answers the calls of `OccupancyField`: density with the geometry
features the colour network reads, the direction encoding, and colour from both. The renderer's
inference path uses them to encode each ray's direction once and to evaluate colour only for the
samples that contribute to the image.

As a field, a hierarchical pair answers with its fine network (the one whose renders are
reported), so density queries and mesh colours need no special case.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

SAMPLING_KINDS = ("occupancy", "hierarchical")


@runtime_checkable
class RadianceField(Protocol):
    sampling: str  # one of SAMPLING_KINDS

    def __call__(
        self,
        positions: Tensor,  # [S, 3] world frame
        directions: Tensor,  # [S, 3] unit
    ) -> tuple[Tensor, Tensor]:  # sigmas [S], rgbs [S, 3]
        """Density and view-dependent colour."""
        ...

    def query_density(self, positions: Tensor) -> Tensor:  # [S, 3] -> [S]
        """Density alone (occupancy updates, iso levels, mesh lattices)."""
        ...

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimiser parameter groups (e.g. hash tables without weight decay)."""
        ...

    def kernel_backends(self, device: torch.device) -> list[str]:
        """The kernels this field runs on `device`, for the log ([] when it has none to choose)."""
        ...


@runtime_checkable
class OccupancyField(RadianceField, Protocol):
    """A field with sampling "occupancy": its evaluation split into density and colour."""

    def density_and_geometry(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Density [S] and geometry features [S, G] at world positions [S, 3]."""
        ...

    def encode_directions(self, directions: Tensor) -> Tensor:  # [N, 3] unit -> [N, D]
        """The view-direction encoding."""
        ...

    def color(self, geometry: Tensor, direction_features: Tensor) -> Tensor:  # [S, G], [S, D] -> [S, 3]
        """Colour from geometry features and encoded directions; field(p, d) equals
        (sigmas, color(geometry, encode_directions(d))) for (sigmas, geometry) at p."""
        ...


@runtime_checkable
class FeatureReuseField(OccupancyField, Protocol):
    """An occupancy field whose gradient pass can reuse what a density query computed: the
    trainer's marcher asks densities of the samples it then back-propagates through, so the
    field's encoding of them is computed once (the hash grid's, on its numba and torch backends)."""

    def density_and_features(self, positions: Tensor) -> tuple[Tensor, Tensor | None]:
        """Density [S] without gradient, and features [S, C] that `field(positions, directions,
        features=...)` takes back while the parameters are unchanged (None: nothing to reuse)."""
        ...

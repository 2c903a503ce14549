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

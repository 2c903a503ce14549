"""Rendering: compositing packed samples along rays (see composite.py for the backends)."""

from nerf.render.composite import RenderOutput, available_backends, composite

__all__ = ["RenderOutput", "available_backends", "composite"]

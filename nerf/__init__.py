"""A NeRF reconstruction toolkit: posed photos in, radiance fields, videos and meshes out."""

__version__ = "0.1.0"

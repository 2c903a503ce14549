"""Input encodings: NeRF's frequency encoding, real spherical harmonics, the hash grid."""

from nerf.encodings.frequency import FrequencyEncoding
from nerf.encodings.hashgrid import HashGrid, available_hashgrid_backends, hash_encode
from nerf.encodings.hashgrid_levels import HashGridLevels, make_levels, per_level_scale
from nerf.encodings.sh import SphericalHarmonics, spherical_harmonics

__all__ = [
    "FrequencyEncoding",
    "HashGrid",
    "HashGridLevels",
    "SphericalHarmonics",
    "available_hashgrid_backends",
    "hash_encode",
    "make_levels",
    "per_level_scale",
    "spherical_harmonics",
]

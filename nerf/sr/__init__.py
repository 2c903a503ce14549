"""Super-resolution post-pass: ESRGAN / Real-ESRGAN nets, their weight files, tiled inference.

    model = load_sr_weights("realesr-animevideov3.pth")      # any known key layout
    big = upscale_image(model, image)                         # [H, W, 3] -> [4H, 4W, 3]
    net = train_adapted_sr(renders, photos, AdaptConfig())    # or fit one to a scene
"""

from nerf.sr.adapt import AdaptConfig, load_adapted_sr, save_adapted_sr, train_adapted_sr
from nerf.sr.compact import SRVGGNetCompact
from nerf.sr.rrdbnet import RRDBNet
from nerf.sr.upscale import upscale_frames, upscale_image, upscale_tensor
from nerf.sr.weights import LAYOUTS, load_sr_weights, save_sr_weights

__all__ = [
    "LAYOUTS",
    "AdaptConfig",
    "RRDBNet",
    "SRVGGNetCompact",
    "load_adapted_sr",
    "load_sr_weights",
    "save_adapted_sr",
    "save_sr_weights",
    "train_adapted_sr",
    "upscale_frames",
    "upscale_image",
    "upscale_tensor",
]

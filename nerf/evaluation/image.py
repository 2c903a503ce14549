"""Image quality metrics: PSNR and SSIM (Wang et al. 2004, Gaussian window 11, sigma 1.5).

LPIPS is reported only when the optional `lpips` package imports; it is never required.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(image: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] ([H, W, 3] or any equal shapes)."""
    mse = torch.mean((image.float() - target.float()) ** 2)
    return float(-10.0 * torch.log10(mse.clamp_min(1e-12)))


def ssim(image: Tensor, target: Tensor) -> float:
    """Mean structural similarity of two [H, W, C] images in [0, 1] (valid convolution)."""
    x = image.float().permute(2, 0, 1)[:, None]  # [C, 1, H, W]
    y = target.float().permute(2, 0, 1)[:, None]
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=x.device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :])[None, None]

    def blur(z):
        return F.conv2d(z, win)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


class OptionalLPIPS:
    """LPIPS (AlexNet) when the `lpips` package and its weights are installed, else absent."""

    def __init__(self, device: torch.device):
        self.model = None
        try:
            import lpips  # noqa: F401  (optional dependency)

            self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        except Exception:  # the package or its weights are missing: LPIPS is simply not reported
            self.model = None

    @property
    def available(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def __call__(self, image: Tensor, target: Tensor) -> float:
        a = image.permute(2, 0, 1)[None] * 2 - 1
        b = target.permute(2, 0, 1)[None] * 2 - 1
        return float(self.model(a, b))

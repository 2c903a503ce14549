"""Image quality metrics: PSNR and SSIM (Wang et al. 2004, Gaussian window 11, sigma 1.5).

LPIPS is reported only when the optional `lpips` package and its weights load; otherwise the
metrics say it is absent and why. It is never required.
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
    """LPIPS (AlexNet) when the `lpips` package and its weights are installed, else absent with
    the reason (`status`), which the metrics record instead of a number."""

    def __init__(self, device: torch.device):
        self.model, self.status = None, ""
        try:
            import lpips  # optional dependency: pip install -e ".[lpips]"
        except ImportError:
            self.status = 'absent: the lpips package is not installed (pip install -e ".[lpips]")'
            return
        try:
            self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        except Exception as exc:  # its AlexNet weights are fetched on first use and may be missing
            self.status = f"absent: the lpips weights could not be loaded ({type(exc).__name__}: {exc})"

    @property
    def available(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def __call__(self, image: Tensor, target: Tensor) -> float:  # [H, W, 3] in [0, 1] each
        a = image.permute(2, 0, 1)[None] * 2 - 1
        b = target.permute(2, 0, 1)[None] * 2 - 1
        return float(self.model(a, b))

    def summary(self, values: list[dict]) -> dict:
        """{"lpips": mean over the views} or {"lpips": None, "lpips_status": why it is absent}."""
        if not self.available:
            return {"lpips": None, "lpips_status": self.status}
        return {"lpips": sum(v["lpips"] for v in values) / len(values)}

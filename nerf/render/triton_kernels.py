"""Volume-rendering compositing as fused Triton kernels (forward and backward).

Same equation, names and signature as `nerf.render.reference` (read its docstring first): one
program per ray marches the ray's samples in blocks of `BLOCK_SAMPLES`, keeping the running
optical depth (sum of sigma*delta) and the per-ray sums in registers. The running sum starts at
0 for every ray, so unlike a global cumulative sum it has no cancellation problem in float32.

Forward: weights [S] plus rgb [N, 3], opacity [N], depth [N]; no per-sample intermediates are
saved. Backward recomputes what it needs. With cotangents v_rgb, v_opacity, v_depth, v_weights
and, per sample,

    g_i = v_rgb . (c_i - background) + v_opacity + v_depth * t_mid_i + v_weights_i

the loss restricted to the weights is sum_i w_i g_i, and since dw_i/ds_k = -w_i for k < i and
T_{k+1} for k = i (s = sigma*delta),

    dL/ds_k = T_{k+1} g_k - sum_{i > k} w_i g_i.

The suffix sum is (total - inclusive prefix sum), where the per-ray total is known from the
forward outputs: total = v_rgb . (rgb - background) + v_opacity * opacity + v_depth * depth
(+ sum_i v_weights_i w_i, which takes one extra pass over the ray only when the weights have a
gradient). So the backward walks each ray forward once, like the forward.

Gradients: sigmas, rgbs, t_starts and t_ends in the kernel (the t gradients only when asked
for); background in PyTorch (it is per ray). Computation runs in float32, or float64 for float64
inputs; float16/bfloat16 inputs are upcast to float32 and the outputs cast back.

Early termination: with `early_stop_eps > 0` a ray stops at the first block whose leading
transmittance is below the threshold, and samples with T_i < eps get weight 0 (the reference
does the same masking, so both backends agree). The default 0 marches every sample.

Under `TRITON_INTERPRET=1` the kernels run on CPU tensors in Triton's interpreter (slow, for
tests). libdevice (expm1) is unavailable there, so alpha uses Kahan's expm1 formula instead.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from nerf.render.composite import RenderOutput
from nerf.render.reference import ray_offsets

# Samples loaded per loop step of a ray. Rays from an occupancy-grid sampler carry tens to a few
# hundred samples, so a small block keeps lanes busy without a long masked tail.
BLOCK_SAMPLES = 32
NUM_WARPS = 1


@triton.jit
def _alpha(s):
    """1 - exp(-s) with the relative precision of expm1 (Kahan's formula for moderate s)."""
    u = tl.exp(-s)
    moderate = (u >= 0.5) & (u < 1.0)
    u_safe = tl.where(moderate, u, 0.75)
    kahan = (1.0 - u_safe) * s / -tl.log(u_safe)
    return tl.where(moderate, kahan, tl.where(u == 1.0, s, 1.0 - u))


@triton.jit
def _block_weights(t_starts_ptr, t_ends_ptr, sigmas_ptr, idx, mask, optical_depth, early_stop_eps):
    """One block of a ray's samples: (t0, t1, s = sigma * delta, w = T * alpha, 0 past the early stop)."""
    t0 = tl.load(t_starts_ptr + idx, mask=mask, other=0.0)
    t1 = tl.load(t_ends_ptr + idx, mask=mask, other=0.0)
    sigma = tl.load(sigmas_ptr + idx, mask=mask, other=0.0)
    s = sigma * (t1 - t0)
    transmittance = tl.exp(-(optical_depth + (tl.cumsum(s, axis=0) - s)))
    keep = mask & (transmittance >= early_stop_eps)
    return t0, t1, s, tl.where(keep, transmittance * _alpha(s), 0.0)


@triton.jit
def _composite_fwd_kernel(
    t_starts_ptr,  # [S]
    t_ends_ptr,  # [S]
    sigmas_ptr,  # [S]
    rgbs_ptr,  # [S, 3] contiguous
    offsets_ptr,  # [N + 1]
    background_ptr,  # [N, 3] or [3]
    background_stride,  # 3 for [N, 3], 0 for [3]
    rgb_ptr,  # [N, 3] out
    opacity_ptr,  # [N] out
    depth_ptr,  # [N] out
    weights_ptr,  # [S] out
    early_stop_eps,
    BLOCK: tl.constexpr,
):
    ray = tl.program_id(0)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    lanes = tl.arange(0, BLOCK)
    zeros = tl.zeros([BLOCK], dtype=sigmas_ptr.dtype.element_ty)
    acc_r = zeros
    acc_g = zeros
    acc_b = zeros
    acc_opacity = zeros
    acc_depth = zeros
    optical_depth = tl.sum(zeros, axis=0)

    i = start
    while (i < end) & (tl.exp(-optical_depth) >= early_stop_eps):
        idx = i + lanes
        mask = idx < end
        t0, t1, s, w = _block_weights(t_starts_ptr, t_ends_ptr, sigmas_ptr, idx, mask, optical_depth,
                                      early_stop_eps)
        tl.store(weights_ptr + idx, w, mask=mask)

        acc_r += w * tl.load(rgbs_ptr + 3 * idx, mask=mask, other=0.0)
        acc_g += w * tl.load(rgbs_ptr + 3 * idx + 1, mask=mask, other=0.0)
        acc_b += w * tl.load(rgbs_ptr + 3 * idx + 2, mask=mask, other=0.0)
        acc_opacity += w
        acc_depth += w * 0.5 * (t0 + t1)
        optical_depth += tl.sum(s, axis=0)
        i += BLOCK

    opacity = tl.sum(acc_opacity, axis=0)
    rest = 1.0 - opacity
    bg = background_ptr + ray * background_stride
    tl.store(rgb_ptr + 3 * ray, tl.sum(acc_r, axis=0) + rest * tl.load(bg))
    tl.store(rgb_ptr + 3 * ray + 1, tl.sum(acc_g, axis=0) + rest * tl.load(bg + 1))
    tl.store(rgb_ptr + 3 * ray + 2, tl.sum(acc_b, axis=0) + rest * tl.load(bg + 2))
    tl.store(opacity_ptr + ray, opacity)
    tl.store(depth_ptr + ray, tl.sum(acc_depth, axis=0))


@triton.jit
def _composite_bwd_kernel(
    t_starts_ptr,  # [S]
    t_ends_ptr,  # [S]
    sigmas_ptr,  # [S]
    rgbs_ptr,  # [S, 3] contiguous
    offsets_ptr,  # [N + 1]
    background_ptr,  # [N, 3] or [3]
    background_stride,  # 3 for [N, 3], 0 for [3]
    rgb_ptr,  # [N, 3] forward output
    opacity_ptr,  # [N] forward output
    depth_ptr,  # [N] forward output
    v_rgb_ptr,  # [N, 3]
    v_opacity_ptr,  # [N]
    v_depth_ptr,  # [N]
    v_weights_ptr,  # [S], read only if HAS_V_WEIGHTS
    v_sigmas_ptr,  # [S] out
    v_rgbs_ptr,  # [S, 3] out
    v_t_starts_ptr,  # [S] out, written only if NEEDS_T_GRAD
    v_t_ends_ptr,  # [S] out, written only if NEEDS_T_GRAD
    early_stop_eps,
    HAS_V_WEIGHTS: tl.constexpr,
    NEEDS_T_GRAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    ray = tl.program_id(0)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    lanes = tl.arange(0, BLOCK)
    zeros = tl.zeros([BLOCK], dtype=sigmas_ptr.dtype.element_ty)

    bg = background_ptr + ray * background_stride
    bg_r = tl.load(bg)
    bg_g = tl.load(bg + 1)
    bg_b = tl.load(bg + 2)
    v_r = tl.load(v_rgb_ptr + 3 * ray)
    v_g = tl.load(v_rgb_ptr + 3 * ray + 1)
    v_b = tl.load(v_rgb_ptr + 3 * ray + 2)
    v_opacity = tl.load(v_opacity_ptr + ray)
    v_depth = tl.load(v_depth_ptr + ray)
    total = (
        v_r * (tl.load(rgb_ptr + 3 * ray) - bg_r)
        + v_g * (tl.load(rgb_ptr + 3 * ray + 1) - bg_g)
        + v_b * (tl.load(rgb_ptr + 3 * ray + 2) - bg_b)
        + v_opacity * tl.load(opacity_ptr + ray)
        + v_depth * tl.load(depth_ptr + ray)
    )

    if HAS_V_WEIGHTS:
        # sum_i v_weights_i w_i is not recoverable from the per-ray outputs: one extra pass.
        acc_vw = zeros
        optical_depth = tl.sum(zeros, axis=0)
        i = start
        while (i < end) & (tl.exp(-optical_depth) >= early_stop_eps):
            idx = i + lanes
            mask = idx < end
            _, _, s, w = _block_weights(t_starts_ptr, t_ends_ptr, sigmas_ptr, idx, mask, optical_depth,
                                        early_stop_eps)
            acc_vw += w * tl.load(v_weights_ptr + idx, mask=mask, other=0.0)
            optical_depth += tl.sum(s, axis=0)
            i += BLOCK
        total += tl.sum(acc_vw, axis=0)

    optical_depth = tl.sum(zeros, axis=0)
    prefix = tl.sum(zeros, axis=0)  # sum of w_i g_i over the samples already visited
    i = start
    while (i < end) & (tl.exp(-optical_depth) >= early_stop_eps):
        idx = i + lanes
        mask = idx < end
        t0 = tl.load(t_starts_ptr + idx, mask=mask, other=0.0)
        t1 = tl.load(t_ends_ptr + idx, mask=mask, other=0.0)
        sigma = tl.load(sigmas_ptr + idx, mask=mask, other=0.0)
        delta = t1 - t0
        s = sigma * delta
        inclusive = optical_depth + tl.cumsum(s, axis=0)
        transmittance = tl.exp(-(inclusive - s))
        keep = mask & (transmittance >= early_stop_eps)
        w = tl.where(keep, transmittance * _alpha(s), 0.0)

        r = tl.load(rgbs_ptr + 3 * idx, mask=mask, other=0.0)
        g = tl.load(rgbs_ptr + 3 * idx + 1, mask=mask, other=0.0)
        b = tl.load(rgbs_ptr + 3 * idx + 2, mask=mask, other=0.0)
        grad_w = v_r * (r - bg_r) + v_g * (g - bg_g) + v_b * (b - bg_b) + v_opacity + v_depth * 0.5 * (t0 + t1)
        if HAS_V_WEIGHTS:
            grad_w += tl.load(v_weights_ptr + idx, mask=mask, other=0.0)
        wg = w * grad_w
        suffix = total - (prefix + tl.cumsum(wg, axis=0))
        v_s = tl.where(keep, tl.exp(-inclusive) * grad_w - suffix, 0.0)

        tl.store(v_sigmas_ptr + idx, v_s * delta, mask=mask)
        tl.store(v_rgbs_ptr + 3 * idx, w * v_r, mask=mask)
        tl.store(v_rgbs_ptr + 3 * idx + 1, w * v_g, mask=mask)
        tl.store(v_rgbs_ptr + 3 * idx + 2, w * v_b, mask=mask)
        if NEEDS_T_GRAD:
            from_depth = 0.5 * v_depth * w
            tl.store(v_t_starts_ptr + idx, from_depth - v_s * sigma, mask=mask)
            tl.store(v_t_ends_ptr + idx, from_depth + v_s * sigma, mask=mask)

        optical_depth += tl.sum(s, axis=0)
        prefix += tl.sum(wg, axis=0)
        i += BLOCK


def _per_sample_buffer(like: Tensor, early_stop_eps: float) -> Tensor:
    """Output buffer for per-sample values; zeroed when early stop may leave samples unvisited."""
    return torch.zeros_like(like) if early_stop_eps > 0.0 else torch.empty_like(like)


class _CompositeFunction(torch.autograd.Function):
    """Autograd wrapper: fused forward kernel, fused backward kernel."""

    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, rgbs, background, ray_indices, n_rays, early_stop_eps):
        offsets = ray_offsets(ray_indices, n_rays)
        background_stride = 3 if background.dim() == 2 else 0
        rgb = sigmas.new_empty(n_rays, 3)
        opacity = sigmas.new_empty(n_rays)
        depth = sigmas.new_empty(n_rays)
        weights = _per_sample_buffer(sigmas, early_stop_eps)
        if n_rays > 0:
            _composite_fwd_kernel[(n_rays,)](
                t_starts, t_ends, sigmas, rgbs, offsets, background, background_stride,
                rgb, opacity, depth, weights, early_stop_eps,
                BLOCK=BLOCK_SAMPLES, num_warps=NUM_WARPS,
            )  # fmt: skip
        ctx.save_for_backward(t_starts, t_ends, sigmas, rgbs, background, offsets, rgb, opacity, depth)
        ctx.n_rays = n_rays
        ctx.early_stop_eps = early_stop_eps
        return rgb, opacity, depth, weights

    @staticmethod
    def backward(ctx, v_rgb, v_opacity, v_depth, v_weights):
        t_starts, t_ends, sigmas, rgbs, background, offsets, rgb, opacity, depth = ctx.saved_tensors
        n_rays, eps = ctx.n_rays, ctx.early_stop_eps
        # Outputs that did not reach the loss come back as None: their cotangent is zero.
        v_rgb = torch.zeros_like(rgb) if v_rgb is None else v_rgb.contiguous()
        v_opacity = torch.zeros_like(opacity) if v_opacity is None else v_opacity.contiguous()
        v_depth = torch.zeros_like(depth) if v_depth is None else v_depth.contiguous()
        has_v_weights = v_weights is not None
        v_weights = v_weights.contiguous() if has_v_weights else sigmas
        needs_t_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]

        v_sigmas = _per_sample_buffer(sigmas, eps)
        v_rgbs = _per_sample_buffer(rgbs, eps)
        v_t_starts = _per_sample_buffer(t_starts, eps) if needs_t_grad else None
        v_t_ends = _per_sample_buffer(t_ends, eps) if needs_t_grad else None
        if n_rays > 0:
            _composite_bwd_kernel[(n_rays,)](
                t_starts, t_ends, sigmas, rgbs, offsets, background, 3 if background.dim() == 2 else 0,
                rgb, opacity, depth, v_rgb, v_opacity, v_depth, v_weights,
                v_sigmas, v_rgbs,
                v_t_starts if needs_t_grad else v_sigmas, v_t_ends if needs_t_grad else v_sigmas,
                eps,
                HAS_V_WEIGHTS=has_v_weights, NEEDS_T_GRAD=needs_t_grad,
                BLOCK=BLOCK_SAMPLES, num_warps=NUM_WARPS,
            )  # fmt: skip

        v_background = None
        if ctx.needs_input_grad[4]:
            v_background = v_rgb * (1.0 - opacity)[:, None]
            if background.dim() == 1:
                v_background = v_background.sum(dim=0)
        return v_t_starts, v_t_ends, v_sigmas, v_rgbs, v_background, None, None, None


def composite(
    t_starts: Tensor,  # [S]
    t_ends: Tensor,  # [S]
    ray_indices: Tensor,  # [S] int64, sorted
    sigmas: Tensor,  # [S]
    rgbs: Tensor,  # [S, 3]
    n_rays: int,
    background: Tensor | None = None,  # [N, 3] or [3]
    *,
    early_stop_eps: float = 0.0,
) -> RenderOutput:  # rgb [N, 3], opacity [N], depth [N], weights [S]
    """Composite packed samples along their rays with the fused Triton kernels.

    Same equation and contract as `nerf.render.reference.composite`; inputs are assumed valid
    (the dispatcher `nerf.render.composite` checks them). Tensors must be on a CUDA device, or
    on the CPU with `TRITON_INTERPRET=1`.

    Args:
        t_starts: [S] sample interval starts along the ray.
        t_ends: [S] sample interval ends.
        ray_indices: [S] int64 ray of each sample, sorted ascending.
        sigmas: [S] non-negative densities.
        rgbs: [S, 3] colours.
        n_rays: number of rays N (rays without samples are allowed).
        background: [N, 3] or [3] colour behind the ray; None means black.
        early_stop_eps: stop marching a ray once its transmittance is below this; 0 = off.

    Returns:
        RenderOutput(rgb [N, 3], opacity [N], depth [N], weights [S]).
    """
    out_dtype = sigmas.dtype
    compute_dtype = torch.float64 if out_dtype == torch.float64 else torch.float32
    if background is None:
        background = sigmas.new_zeros(3, dtype=compute_dtype)
    inputs = [x.to(compute_dtype).contiguous() for x in (t_starts, t_ends, sigmas, rgbs, background)]
    rgb, opacity, depth, weights = _CompositeFunction.apply(
        *inputs, ray_indices.contiguous(), n_rays, float(early_stop_eps)
    )
    return RenderOutput(*(x.to(out_dtype) for x in (rgb, opacity, depth, weights)))

"""Volume-rendering compositing as numba CPU kernels (forward and backward), compiled at first use.

Same equation, names and signature as `nerf.render.reference` (read its docstring first) and the
same structure as `nerf.render.triton_kernels`: the forward runs a parallel loop over rays
(`numba.prange`), each ray marching its samples in order with its transmittance and per-ray sums
held in float64 registers. Transmittance starts at 1 for every ray, so there is no global
cumulative sum to cancel, and float64 leaves only the float32 rounding of the outputs, even on
rays of 1e5 samples. It is kept as the product T_{i+1} = T_i exp(-s_i) (relative error ~1e-16
per sample), with alpha_i = -expm1(-s_i) and exp(-s_i) = 1 - alpha_i while alpha_i < 1/2: mostly one
transcendental call per sample (exp of the running sum plus expm1 would be two, per pass). No per-sample
intermediates are saved (only five float64 sums per ray); the backward recomputes them.

Backward (the Triton kernel's derivation). With cotangents v_rgb, v_opacity, v_depth, v_weights
and, per sample,

    g_i = v_rgb . (c_i - background) + v_opacity + v_depth * t_mid_i + v_weights_i

the loss restricted to the weights is sum_i w_i g_i. With s = sigma * delta,
w_i = T_i (1 - exp(-s_i)) and T_i = exp(-sum_{j<i} s_j), dw_i/ds_k = -w_i for k < i and
T_{k+1} for k = i, so

    dL/ds_k = T_{k+1} g_k - sum_{i > k} w_i g_i,
    dL/dsigma_k = dL/ds_k delta_k,   dL/dt_end_k = dL/ds_k sigma_k + v_depth w_k / 2,
    dL/dt_start_k = -dL/ds_k sigma_k + v_depth w_k / 2,   dL/dc_k = w_k v_rgb,
    dL/dbackground = v_rgb (1 - opacity)   (summed over rays for a shared [3] background).

The suffix sum is (total - inclusive prefix sum), so the backward walks each ray forward once,
like the forward. The per-ray total = v_rgb . (sum w c - background opacity) + v_opacity opacity
+ v_depth depth comes from the float64 sums the forward saved (the Triton kernel reads it from the
float32 outputs), so the subtraction costs ~1e-16 of the total rather than ~1e-7; the term
sum_i v_weights_i w_i takes one extra pass over the ray, only when the weights have a gradient.

Early termination (`early_stop_eps > 0`): samples with transmittance T_i < eps get weight 0 and no
gradient, as in the reference; since T is non-increasing along a ray, the kernels stop marching the
ray at the first such sample (the per-sample outputs start zeroed). The default 0 marches every
sample.

Dtypes: float32 inputs run as float32 arrays with float64 arithmetic inside the kernels; float64
inputs run as float64 (a separate compiled specialisation); float16/bfloat16 are upcast to float32
and the outputs cast back. Inputs must be CPU tensors; they reach the kernels as zero-copy numpy
views (`.contiguous().numpy()`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from nerf.render.composite import RenderOutput
from nerf.render.reference import ray_offsets


@numba.njit(cache=True, inline="always")
def _alpha_and_survival(s):  # -> (alpha, survival): 1 - exp(-s) and exp(-s), both to float64 precision
    """alpha = 1 - exp(-s) with the relative precision of expm1, and exp(-s) from it without a
    second exp unless alpha >= 1/2 (then 1 - alpha would lose exp(-s)'s relative precision)."""
    alpha = -math.expm1(-s)
    survival = 1.0 - alpha if alpha < 0.5 else math.exp(-s)
    return alpha, survival


@numba.njit(parallel=True, cache=True)
def _composite_fwd_kernel(
    t_starts,  # [S]
    t_ends,  # [S]
    sigmas,  # [S]
    rgbs,  # [S, 3]
    offsets,  # [N + 1] int64
    background,  # [B, 3], B = N (per ray) or 1 (shared)
    background_stride,  # 1 for per-ray, 0 for shared
    early_stop_eps,  # float
    rgb,  # [N, 3] out
    opacity,  # [N] out
    depth,  # [N] out
    weights,  # [S] out, zeroed by the caller when early_stop_eps > 0
    sums,  # [N, 5] float64 out: sum w c (3), sum w, sum w t_mid; the backward's per-ray totals
):
    n_rays = offsets.shape[0] - 1
    for ray in numba.prange(n_rays):
        acc_r = 0.0
        acc_g = 0.0
        acc_b = 0.0
        acc_opacity = 0.0
        acc_depth = 0.0
        transmittance = 1.0
        for i in range(offsets[ray], offsets[ray + 1]):
            if transmittance < early_stop_eps:
                break
            t0 = np.float64(t_starts[i])
            t1 = np.float64(t_ends[i])
            alpha, survival = _alpha_and_survival(np.float64(sigmas[i]) * (t1 - t0))
            w = transmittance * alpha
            weights[i] = w
            acc_r += w * rgbs[i, 0]
            acc_g += w * rgbs[i, 1]
            acc_b += w * rgbs[i, 2]
            acc_opacity += w
            acc_depth += w * 0.5 * (t0 + t1)
            transmittance *= survival
        rest = 1.0 - acc_opacity
        row = ray * background_stride
        rgb[ray, 0] = acc_r + rest * background[row, 0]
        rgb[ray, 1] = acc_g + rest * background[row, 1]
        rgb[ray, 2] = acc_b + rest * background[row, 2]
        opacity[ray] = acc_opacity
        depth[ray] = acc_depth
        sums[ray, 0] = acc_r
        sums[ray, 1] = acc_g
        sums[ray, 2] = acc_b
        sums[ray, 3] = acc_opacity
        sums[ray, 4] = acc_depth


@numba.njit(parallel=True, cache=True)
def _composite_bwd_kernel(
    t_starts,  # [S]
    t_ends,  # [S]
    sigmas,  # [S]
    rgbs,  # [S, 3]
    offsets,  # [N + 1] int64
    background,  # [B, 3]
    background_stride,  # 1 for per-ray, 0 for shared
    early_stop_eps,  # float
    sums,  # [N, 5] float64, from the forward
    v_rgb,  # [N, 3]
    v_opacity,  # [N]
    v_depth,  # [N]
    v_weights,  # [S], read only if has_v_weights
    has_v_weights,  # bool
    needs_t_grad,  # bool
    v_sigmas,  # [S] out (zeroed by the caller when early_stop_eps > 0)
    v_rgbs,  # [S, 3] out (idem)
    v_t_starts,  # [S] out, written only if needs_t_grad (idem)
    v_t_ends,  # [S] out, written only if needs_t_grad (idem)
):
    n_rays = offsets.shape[0] - 1
    for ray in numba.prange(n_rays):
        start, end = offsets[ray], offsets[ray + 1]
        row = ray * background_stride
        bg_r = np.float64(background[row, 0])
        bg_g = np.float64(background[row, 1])
        bg_b = np.float64(background[row, 2])
        vr = np.float64(v_rgb[ray, 0])
        vg = np.float64(v_rgb[ray, 1])
        vb = np.float64(v_rgb[ray, 2])
        vo = np.float64(v_opacity[ray])
        vd = np.float64(v_depth[ray])

        # total = sum_i w_i g_i, from the forward's float64 per-ray sums ...
        acc_opacity = sums[ray, 3]
        total = (
            vr * (sums[ray, 0] - bg_r * acc_opacity)
            + vg * (sums[ray, 1] - bg_g * acc_opacity)
            + vb * (sums[ray, 2] - bg_b * acc_opacity)
            + vo * acc_opacity
            + vd * sums[ray, 4]
        )
        if has_v_weights:
            # ... plus sum_i v_weights_i w_i, which they do not hold: one extra pass.
            transmittance = 1.0
            for i in range(start, end):
                if transmittance < early_stop_eps:
                    break
                alpha, survival = _alpha_and_survival(np.float64(sigmas[i]) * (np.float64(t_ends[i]) - t_starts[i]))
                total += transmittance * alpha * v_weights[i]
                transmittance *= survival

        # One pass: per-sample gradients, with suffix = total - inclusive prefix sum of w_i g_i.
        prefix = 0.0
        transmittance = 1.0
        for i in range(start, end):
            if transmittance < early_stop_eps:
                break
            t0 = np.float64(t_starts[i])
            t1 = np.float64(t_ends[i])
            sigma = np.float64(sigmas[i])
            delta = t1 - t0
            alpha, survival = _alpha_and_survival(sigma * delta)
            w = transmittance * alpha
            transmittance *= survival  # T_{i+1}
            grad_w = vr * (rgbs[i, 0] - bg_r) + vg * (rgbs[i, 1] - bg_g) + vb * (rgbs[i, 2] - bg_b)
            grad_w += vo + vd * 0.5 * (t0 + t1)
            if has_v_weights:
                grad_w += v_weights[i]
            prefix += w * grad_w
            v_s = transmittance * grad_w - (total - prefix)

            v_sigmas[i] = v_s * delta
            v_rgbs[i, 0] = w * vr
            v_rgbs[i, 1] = w * vg
            v_rgbs[i, 2] = w * vb
            if needs_t_grad:
                from_depth = 0.5 * vd * w
                v_t_starts[i] = from_depth - v_s * sigma
                v_t_ends[i] = from_depth + v_s * sigma


def _per_sample_buffer(like: Tensor, early_stop_eps: float) -> Tensor:
    """Output buffer for per-sample values; zeroed when early stop may leave samples unvisited."""
    return torch.zeros_like(like) if early_stop_eps > 0.0 else torch.empty_like(like)


def _np(x: Tensor) -> np.ndarray:
    """Zero-copy numpy view of a CPU tensor (contiguous, detached)."""
    return x.detach().contiguous().numpy()


class _CompositeFunction(torch.autograd.Function):
    """Autograd wrapper: fused forward kernel, fused backward kernel."""

    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, rgbs, background, ray_indices, n_rays, early_stop_eps):
        offsets = ray_offsets(ray_indices, n_rays)
        background_stride = 1 if background.dim() == 2 else 0
        rgb = sigmas.new_empty(n_rays, 3)
        opacity = sigmas.new_empty(n_rays)
        depth = sigmas.new_empty(n_rays)
        weights = _per_sample_buffer(sigmas, early_stop_eps)
        sums = torch.empty(n_rays, 5, dtype=torch.float64)
        if n_rays > 0:
            _composite_fwd_kernel(
                _np(t_starts), _np(t_ends), _np(sigmas), _np(rgbs), _np(offsets),
                _np(background.reshape(-1, 3)), background_stride, early_stop_eps,
                rgb.numpy(), opacity.numpy(), depth.numpy(), weights.numpy(), sums.numpy(),
            )  # fmt: skip
        ctx.save_for_backward(t_starts, t_ends, sigmas, rgbs, background, offsets, opacity, sums)
        ctx.n_rays = n_rays
        ctx.early_stop_eps = early_stop_eps
        return rgb, opacity, depth, weights

    @staticmethod
    def backward(ctx, v_rgb, v_opacity, v_depth, v_weights):
        t_starts, t_ends, sigmas, rgbs, background, offsets, opacity, sums = ctx.saved_tensors
        n_rays, eps = ctx.n_rays, ctx.early_stop_eps
        dtype = sigmas.dtype
        # Outputs that did not reach the loss come back as None: their cotangent is zero.
        v_rgb = sigmas.new_zeros(n_rays, 3) if v_rgb is None else v_rgb.to(dtype).contiguous()
        v_opacity = sigmas.new_zeros(n_rays) if v_opacity is None else v_opacity.to(dtype).contiguous()
        v_depth = sigmas.new_zeros(n_rays) if v_depth is None else v_depth.to(dtype).contiguous()
        has_v_weights = v_weights is not None
        v_weights = v_weights.to(dtype).contiguous() if has_v_weights else sigmas
        needs_t_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]

        v_sigmas = _per_sample_buffer(sigmas, eps)
        v_rgbs = _per_sample_buffer(rgbs, eps)
        v_t_starts = _per_sample_buffer(t_starts, eps) if needs_t_grad else None
        v_t_ends = _per_sample_buffer(t_ends, eps) if needs_t_grad else None
        if n_rays > 0:
            _composite_bwd_kernel(
                _np(t_starts), _np(t_ends), _np(sigmas), _np(rgbs), _np(offsets),
                _np(background.reshape(-1, 3)), 1 if background.dim() == 2 else 0, eps, sums.numpy(),
                _np(v_rgb), _np(v_opacity), _np(v_depth), _np(v_weights), has_v_weights, needs_t_grad,
                v_sigmas.numpy(), v_rgbs.numpy(),
                (v_t_starts if needs_t_grad else v_sigmas).numpy(), (v_t_ends if needs_t_grad else v_sigmas).numpy(),
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
    """Composite packed samples along their rays with the numba CPU kernels.

    Same equation and contract as `nerf.render.reference.composite`; inputs are assumed valid
    (the dispatcher `nerf.render.composite` checks them). Tensors must be on the CPU.

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
        RenderOutput(rgb [N, 3], opacity [N], depth [N], weights [S]) in the dtype of sigmas.
    """
    if sigmas.device.type != "cpu":
        raise ValueError(f"composite (numba): CPU tensors only, got {sigmas.device}")
    out_dtype = sigmas.dtype
    compute_dtype = torch.float64 if out_dtype == torch.float64 else torch.float32
    if background is None:
        background = sigmas.new_zeros(3, dtype=compute_dtype)
    inputs = [x.to(compute_dtype).contiguous() for x in (t_starts, t_ends, sigmas, rgbs, background)]
    rgb, opacity, depth, weights = _CompositeFunction.apply(
        *inputs, ray_indices.contiguous(), n_rays, float(early_stop_eps)
    )
    return RenderOutput(*(x.to(out_dtype) for x in (rgb, opacity, depth, weights)))

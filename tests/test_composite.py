"""Tests for nerf.render.composite: the reference against independent ground truth, and every
available backend against the reference, forward and backward."""

import math

import pytest
import torch

from nerf import backends
from nerf.render import available_backends, composite
from nerf.render.composite import pick_backend

# float64, two formulations of the same sum (product of (1 - alpha) vs exp of a sum): rounding only.
EXACT64_TOL = dict(rtol=1e-10, atol=1e-12)
# float32 backend vs reference on small inputs: different summation order, a few ulps.
FWD_TOL = dict(rtol=1e-5, atol=1e-6)
# float32 gradients: the kernel forms sum_{i>k} w_i g_i as (per-ray total - prefix sum), which
# cancels to the size of the total times float32 epsilon (~1e-7 * |total| ~ 1e-6 here).
BWD_TOL = dict(rtol=1e-4, atol=1e-5)
# float64 backend vs reference: identical maths, rounding only.
FWD64_TOL = dict(rtol=1e-10, atol=1e-12)
BWD64_TOL = dict(rtol=1e-9, atol=1e-11)
# Midpoint quadrature of the continuous integral for depth: error ~ sigma h^2 / 12 per unit opacity.
CONTINUOUS_DEPTH_TOL = 1e-5
# 1e6 packed float32 samples vs float64 (global sum ~7e4): a naive float32 global cumsum errs
# by ~2e-3 in the weights here; the float64 cumsum leaves ~2e-7 (weights), ~3e-6 (depth ~20).
LONG_PACKED_TOL = dict(rtol=1e-5, atol=1e-5)
# Tiny sigma*delta in float32: alpha must keep its relative precision (1 - exp(-x) alone loses it all).
TINY_ALPHA_RTOL = 1e-5
# float16 inputs: outputs carry half precision (eps ~ 1e-3).
# numba on float32 inputs vs the reference on the same values in float64: the kernels run in float64,
# so only the float32 rounding of the outputs remains (eps 6e-8; measured <= 6e-8 relative on 1e6
# packed samples and on a ray of 1e5 samples, where the float32 reference errs by ~1e-5).
F32_OF_F64_TOL = dict(rtol=1e-6, atol=1e-9)
# ... and its gradients, whose float32 cotangents are rounded too: (T g - suffix) and
# (v_depth w / 2 -+ v_s sigma) cancel that rounding up to ~5e-7 absolute (t gradients ~10).
F32_OF_F64_BWD_TOL = dict(rtol=1e-5, atol=1e-6)
HALF_TOL = dict(rtol=1e-2, atol=1e-2)

# Ray lengths: empty rays, a single sample, and one ray longer than a Triton block (32).
SMALL_COUNTS = [3, 0, 1, 37, 5, 0, 8]


def make_packed(counts, dtype=torch.float32, seed=0, device="cpu", sigma_scale=4.0):
    """Random packed samples with the given samples-per-ray; intervals contiguous along each ray."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.as_tensor(counts)
    n_rays = len(counts)
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    n_samples = ray_indices.numel()
    deltas = 0.02 + 0.1 * torch.rand(n_samples, generator=gen, dtype=torch.float64)
    near = 0.5 + torch.rand(n_rays, generator=gen, dtype=torch.float64)
    t_ends = near[ray_indices] + segment_cumsum(deltas, counts)
    t_starts = t_ends - deltas
    sigmas = sigma_scale * torch.rand(n_samples, generator=gen, dtype=torch.float64)
    rgbs = torch.rand(n_samples, 3, generator=gen, dtype=torch.float64)
    return dict(
        t_starts=t_starts.to(device, dtype),
        t_ends=t_ends.to(device, dtype),
        ray_indices=ray_indices.to(device),
        sigmas=sigmas.to(device, dtype),
        rgbs=rgbs.to(device, dtype),
        n_rays=n_rays,
    )


def segment_cumsum(values, counts):
    """Inclusive cumulative sum restarting at every ray (a plain loop: test-only helper)."""
    out, start = torch.empty_like(values), 0
    for count in counts.tolist():
        out[start : start + count] = torch.cumsum(values[start : start + count], 0)
        start += count
    return out


def loop_composite(t_starts, t_ends, ray_indices, sigmas, rgbs, n_rays, background):
    """Independent per-ray, per-sample loop using the product form T_{i+1} = T_i (1 - alpha_i)."""
    rgb = torch.zeros(n_rays, 3, dtype=torch.float64)
    opacity = torch.zeros(n_rays, dtype=torch.float64)
    depth = torch.zeros(n_rays, dtype=torch.float64)
    weights = torch.zeros(len(sigmas), dtype=torch.float64)
    transmittance = {}
    for i in range(len(sigmas)):
        ray = int(ray_indices[i])
        trans = transmittance.get(ray, 1.0)
        alpha = 1.0 - math.exp(-float(sigmas[i]) * float(t_ends[i] - t_starts[i]))
        weights[i] = trans * alpha
        rgb[ray] += weights[i] * rgbs[i].double()
        opacity[ray] += weights[i]
        depth[ray] += weights[i] * 0.5 * float(t_starts[i] + t_ends[i])
        transmittance[ray] = trans * (1.0 - alpha)
    rgb += (1.0 - opacity)[:, None] * background.double()
    return rgb, opacity, depth, weights


def with_grad(packed, names=("t_starts", "t_ends", "sigmas", "rgbs")):
    out = dict(packed)
    for name in names:
        out[name] = packed[name].clone().requires_grad_(True)
    return out


def grads_of(out, cotangents, inputs, outputs=("rgb", "opacity", "depth", "weights")):
    """Vector-Jacobian products of the chosen outputs with the given cotangents."""
    loss = sum((getattr(out, name) * cotangents[name]).sum() for name in outputs)
    return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)


def random_cotangents(ref, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(getattr(ref, name).shape, generator=gen, dtype=torch.float64).to(getattr(ref, name))
        for name in ("rgb", "opacity", "depth", "weights")
    }


# --- the reference against independent ground truth -------------------------------------------


def test_reference_matches_python_loop():
    packed = make_packed(SMALL_COUNTS, dtype=torch.float64)
    background = torch.rand(packed["n_rays"], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = composite(**packed, background=background, backend="torch")
    expected = loop_composite(**packed, background=background)
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want, **EXACT64_TOL)


def constant_density_ray(sigma, near, far, n_samples, dtype=torch.float64):
    edges = torch.linspace(near, far, n_samples + 1, dtype=dtype)
    return dict(
        t_starts=edges[:-1],
        t_ends=edges[1:],
        ray_indices=torch.zeros(n_samples, dtype=torch.int64),
        sigmas=torch.full((n_samples,), sigma, dtype=dtype),
        rgbs=torch.full((n_samples, 3), 0.25, dtype=dtype),
        n_rays=1,
    )


@pytest.mark.parametrize("backend", available_backends())
def test_constant_density_closed_form(backend):
    sigma, near, far, k = 1.5, 0.7, 2.7, 500
    length, h = far - near, (far - near) / k
    out = composite(**constant_density_ray(sigma, near, far, k), backend=backend)

    # Opacity telescopes exactly for any partition of the ray.
    opacity = torch.tensor([1.0 - math.exp(-sigma * length)], dtype=torch.float64)
    torch.testing.assert_close(out.opacity, opacity, **EXACT64_TOL)
    # Discrete depth, in closed form: sum_i q^i (1 - q) (near + (i + 1/2) h) with q = exp(-sigma h).
    q = math.exp(-sigma * h)
    sum_i_qi = q * (1 - k * q ** (k - 1) + (k - 1) * q**k) / (1 - q) ** 2
    discrete = (near + 0.5 * h) * (1 - q**k) + h * (1 - q) * sum_i_qi
    torch.testing.assert_close(out.depth, torch.tensor([discrete], dtype=torch.float64), **EXACT64_TOL)
    # ... which approaches the continuous integral of t sigma exp(-sigma (t - near)) over the ray.
    continuous = near * (1 - math.exp(-sigma * length)) + 1 / sigma - math.exp(-sigma * length) * (length + 1 / sigma)
    assert abs(float(out.depth) - continuous) < CONTINUOUS_DEPTH_TOL
    torch.testing.assert_close(out.rgb, 0.25 * out.opacity.expand(1, 3), **EXACT64_TOL)


def test_reference_gradcheck_float64():
    packed = make_packed([2, 0, 1, 4], dtype=torch.float64, seed=4)
    background = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def fn(t_starts, t_ends, sigmas, rgbs, background):
        out = composite(
            t_starts, t_ends, packed["ray_indices"], sigmas, rgbs, packed["n_rays"], background, backend="torch"
        )
        return tuple(out)

    inputs = [packed[k].clone().requires_grad_(True) for k in ("t_starts", "t_ends", "sigmas", "rgbs")]
    assert torch.autograd.gradcheck(fn, (*inputs, background.requires_grad_(True)))


def test_reference_long_packed_float32_matches_float64():
    n_rays, per_ray = 5_000, 200  # 1e6 samples; the global sum of sigma*delta reaches ~1e5
    packed = make_packed([per_ray] * n_rays, dtype=torch.float64, seed=6, sigma_scale=2.0)
    out64 = composite(**packed, backend="torch")
    packed32 = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in packed.items()}
    out32 = composite(**packed32, backend="torch")
    for got, want in zip(out32, out64):
        torch.testing.assert_close(got.double(), want, **LONG_PACKED_TOL)


# --- edge cases, on every backend -----------------------------------------------------------------


@pytest.mark.parametrize("backend", available_backends())
def test_edge_cases_closed_form(backend):
    # rays: empty | one sample | zero density | alpha ~ 1 at the first sample, then more samples
    dtype = torch.float64
    background = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [0.2, 0.2, 0.2]], dtype=dtype)
    ray_indices = torch.tensor([1, 2, 2, 2, 3, 3, 3])
    t_starts = torch.tensor([1.0, 1.0, 1.5, 2.0, 1.0, 2.0, 3.0], dtype=dtype)
    t_ends = torch.tensor([1.5, 1.5, 2.0, 2.5, 2.0, 3.0, 4.0], dtype=dtype)
    sigmas = torch.tensor([0.8, 0.0, 0.0, 0.0, 50.0, 3.0, 1.0], dtype=dtype)
    rgbs = torch.rand(7, 3, dtype=dtype, generator=torch.Generator().manual_seed(7))
    out = composite(t_starts, t_ends, ray_indices, sigmas, rgbs, 4, background, backend=backend)

    alpha_one = 1 - math.exp(-0.8 * 0.5)
    alpha_near_one = 1 - math.exp(-50.0)
    tail = math.exp(-50.0)  # transmittance after the opaque sample
    w = torch.tensor(
        [alpha_one, 0, 0, 0, alpha_near_one, tail * (1 - math.exp(-3.0)), tail * math.exp(-3.0) * (1 - math.exp(-1.0))],
        dtype=dtype,
    )
    torch.testing.assert_close(out.weights, w, **EXACT64_TOL)
    opacity = torch.tensor([0.0, alpha_one, 0.0, float(w[4:].sum())], dtype=dtype)
    torch.testing.assert_close(out.opacity, opacity, **EXACT64_TOL)
    depth_opaque_ray = float((w[4:] * torch.tensor([1.5, 2.5, 3.5], dtype=dtype)).sum())
    depth = torch.tensor([0.0, alpha_one * 1.25, 0.0, depth_opaque_ray], dtype=dtype)
    torch.testing.assert_close(out.depth, depth, **EXACT64_TOL)
    rgb = background.clone()
    rgb[1] = alpha_one * rgbs[0] + (1 - alpha_one) * background[1]
    rgb[3] = (w[4:, None] * rgbs[4:]).sum(0) + (1 - opacity[3]) * background[3]
    torch.testing.assert_close(out.rgb, rgb, **EXACT64_TOL)


@pytest.mark.parametrize("backend", available_backends())
def test_tiny_optical_depth_keeps_relative_precision(backend):
    sigmas = torch.tensor([1e-9, 1e-7, 1e-5, 1e-3, 1e-1, 0.6], dtype=torch.float32)
    t_starts = torch.arange(6, dtype=torch.float32)
    ray_indices = torch.zeros(6, dtype=torch.int64)
    out = composite(t_starts, t_starts + 1, ray_indices, sigmas, torch.rand(6, 3), 1, backend=backend)
    s = sigmas.double()
    expected = torch.exp(-(torch.cumsum(s, 0) - s)) * -torch.expm1(-s)
    torch.testing.assert_close(out.weights.double(), expected, rtol=TINY_ALPHA_RTOL, atol=0)


@pytest.mark.parametrize("backend", available_backends())
def test_background_shared_equals_per_ray(backend):
    packed = make_packed(SMALL_COUNTS, seed=8)
    color = torch.tensor([0.3, 0.6, 0.9])
    shared = composite(**packed, background=color, backend=backend)
    per_ray = composite(**packed, background=color.expand(packed["n_rays"], 3).contiguous(), backend=backend)
    black = composite(**packed, background=None, backend=backend)
    torch.testing.assert_close(shared.rgb, per_ray.rgb, rtol=0, atol=0)
    torch.testing.assert_close(shared.rgb, black.rgb + (1 - black.opacity)[:, None] * color, **FWD_TOL)
    empty = torch.tensor(SMALL_COUNTS) == 0
    torch.testing.assert_close(shared.rgb[empty], color.expand(int(empty.sum()), 3), rtol=0, atol=0)


@pytest.mark.parametrize("backend", available_backends())
def test_no_samples_at_all(backend):
    packed = make_packed([0, 0, 0])
    background = torch.rand(3, 3, generator=torch.Generator().manual_seed(9))
    out = composite(**packed, background=background, backend=backend)
    assert out.weights.shape == (0,)
    torch.testing.assert_close(out.rgb, background, rtol=0, atol=0)
    assert out.opacity.eq(0).all() and out.depth.eq(0).all()


# --- every backend against the reference, forward and backward -----------------------------------


def assert_matches_reference(backend, packed, background, fwd_tol, bwd_tol, outputs, early_stop_eps=0.0):
    names = ("t_starts", "t_ends", "sigmas", "rgbs")
    ins, ins_ref = with_grad(packed, names), with_grad(packed, names)
    bg, bg_ref = background.clone().requires_grad_(True), background.clone().requires_grad_(True)
    out = composite(**ins, background=bg, backend=backend, early_stop_eps=early_stop_eps)
    ref = composite(**ins_ref, background=bg_ref, backend="torch", early_stop_eps=early_stop_eps)
    for got, want in zip(out, ref):
        torch.testing.assert_close(got, want, **fwd_tol)
    cotangents = random_cotangents(ref)
    grads = grads_of(out, cotangents, [ins[k] for k in names] + [bg], outputs)
    grads_ref = grads_of(ref, cotangents, [ins_ref[k] for k in names] + [bg_ref], outputs)
    for name, got, want in zip(names + ("background",), grads, grads_ref):
        torch.testing.assert_close(got, want, **bwd_tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("background_shape", [(3,), (len(SMALL_COUNTS), 3)])
def test_backend_matches_reference(backend, background_shape):
    packed = make_packed(SMALL_COUNTS, seed=10)
    background = torch.rand(background_shape, generator=torch.Generator().manual_seed(11))
    assert_matches_reference(backend, packed, background, FWD_TOL, BWD_TOL, ("rgb", "opacity", "depth", "weights"))


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("outputs", [("rgb",), ("opacity",), ("depth",), ("weights",)])
def test_backend_matches_reference_single_output(backend, outputs):
    packed = make_packed(SMALL_COUNTS, dtype=torch.float64, seed=12)
    background = torch.rand(3, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    assert_matches_reference(backend, packed, background, FWD64_TOL, BWD64_TOL, outputs)


@pytest.mark.parametrize("backend", available_backends())
def test_backend_matches_reference_early_stop(backend):
    packed = make_packed(SMALL_COUNTS, dtype=torch.float64, seed=14, sigma_scale=20.0)
    background = torch.rand(3, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    eps = 1e-2
    stopped = composite(**packed, backend="torch", early_stop_eps=eps)
    assert (stopped.weights == 0).any() and (composite(**packed, backend="torch").weights > 0).all()
    outputs = ("rgb", "opacity", "depth", "weights")
    assert_matches_reference(backend, packed, background, FWD64_TOL, BWD64_TOL, outputs, early_stop_eps=eps)


@pytest.mark.parametrize("backend", available_backends())
def test_half_precision_inputs(backend):
    packed = make_packed(SMALL_COUNTS, seed=16)
    half = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in packed.items()}
    out = composite(**half, backend=backend)
    ref = composite(**packed, backend="torch")
    for got, want in zip(out, ref):
        assert got.dtype == torch.float16
        torch.testing.assert_close(got.float(), want, **HALF_TOL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_uses_triton_and_matches_reference():
    assert "triton" in available_backends()
    assert pick_backend("auto", torch.device("cuda")) == "triton"
    counts = torch.randint(0, 300, (512,), generator=torch.Generator().manual_seed(17)).tolist()
    packed = make_packed(counts, seed=18, device="cuda")
    background = torch.rand(3, device="cuda")
    assert_matches_reference("auto", packed, background, FWD_TOL, BWD_TOL, ("rgb", "opacity", "depth", "weights"))


# --- numba: large and long inputs, float32 against the float64 reference ----------------------------

needs_numba = pytest.mark.skipif(not backends.numba_available("cpu"), reason="needs numba")
RENDER_OUTPUTS = ("rgb", "opacity", "depth", "weights")


def as_float64(packed):
    return {k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in packed.items()}


def assert_float32_matches_float64_reference(packed32, background32, fwd_tol, bwd_tol, outputs):
    """numba on float32 inputs vs the reference on the same values in float64, forward and backward."""
    names = ("t_starts", "t_ends", "sigmas", "rgbs")
    ins, ins_ref = with_grad(packed32, names), with_grad(as_float64(packed32), names)
    bg, bg_ref = background32.clone().requires_grad_(True), background32.double().requires_grad_(True)
    out = composite(**ins, background=bg, backend="numba")
    ref = composite(**ins_ref, background=bg_ref, backend="torch")
    for name, got, want in zip(RENDER_OUTPUTS, out, ref):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, **fwd_tol, msg=lambda m: f"{name}: {m}")
    cotangents = random_cotangents(ref, seed=20)
    grads = grads_of(out, {k: v.float() for k, v in cotangents.items()}, [ins[k] for k in names] + [bg], outputs)
    grads_ref = grads_of(ref, cotangents, [ins_ref[k] for k in names] + [bg_ref], outputs)
    for name, got, want in zip(names + ("background",), grads, grads_ref):
        torch.testing.assert_close(got.double(), want, **bwd_tol, msg=lambda m: f"{name}: {m}")


@needs_numba
def test_numba_long_packed_float32_matches_float64():
    n_rays, per_ray = 5_000, 200  # 1e6 samples, as in test_reference_long_packed_float32_matches_float64
    packed = make_packed([per_ray] * n_rays, seed=6, sigma_scale=2.0)
    background = torch.rand(n_rays, 3, generator=torch.Generator().manual_seed(21))
    assert_float32_matches_float64_reference(packed, background, F32_OF_F64_TOL, F32_OF_F64_BWD_TOL, RENDER_OUTPUTS)


@needs_numba
def test_numba_long_ray_float32_matches_float64():
    # One ray of 1e5 samples with a total optical depth ~3.5: every weight matters and t reaches
    # ~7e3. The float32 reference errs by ~1e-5 relative here, ten times F32_OF_F64_TOL.
    packed = make_packed([100_000, 3, 0], seed=22, sigma_scale=1e-3)
    background = torch.rand(3, generator=torch.Generator().manual_seed(23))
    assert_float32_matches_float64_reference(packed, background, F32_OF_F64_TOL, F32_OF_F64_BWD_TOL, RENDER_OUTPUTS)


@needs_numba
@pytest.mark.parametrize("outputs", [("weights",), ("rgb", "weights"), RENDER_OUTPUTS])
def test_numba_many_rays_weights_gradient(outputs):
    counts = torch.randint(0, 300, (512,), generator=torch.Generator().manual_seed(24)).tolist()
    packed = make_packed(counts, seed=25)
    background = torch.rand(3, generator=torch.Generator().manual_seed(26))
    assert_float32_matches_float64_reference(packed, background, F32_OF_F64_TOL, F32_OF_F64_BWD_TOL, outputs)
    assert_matches_reference("numba", packed, background, FWD_TOL, BWD_TOL, outputs)


@needs_numba
def test_numba_only_sigmas_and_rgbs_need_grad():
    packed = make_packed(SMALL_COUNTS, seed=27)
    ins, ins_ref = with_grad(packed, ("sigmas", "rgbs")), with_grad(packed, ("sigmas", "rgbs"))
    out = composite(**ins, backend="numba")
    ref = composite(**ins_ref, backend="torch")
    cotangents = random_cotangents(ref, seed=28)
    grads = grads_of(out, cotangents, [ins["sigmas"], ins["rgbs"]])
    grads_ref = grads_of(ref, cotangents, [ins_ref["sigmas"], ins_ref["rgbs"]])
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, **BWD_TOL)


# --- the public boundary ----------------------------------------------------------------------------


def test_auto_on_cpu_is_numba_for_float32_else_torch():
    cpu = torch.device("cpu")
    assert available_backends()[0] == "torch"
    native = "numba" if backends.numba_available(cpu) else "torch"
    assert pick_backend("auto", cpu) == native
    assert pick_backend("auto", cpu, torch.float32) == native
    assert pick_backend("auto", cpu, torch.float64) == "torch"
    assert pick_backend("auto", cpu, torch.float16) == "torch"
    assert pick_backend("torch", cpu) == "torch"


@needs_numba
def test_dispatch_auto_runs_numba_and_torch_runs_the_reference(monkeypatch):
    from nerf.render import numba_kernels, reference

    calls = []
    for module in (numba_kernels, reference):
        real = module.composite

        def spy(*args, _real=real, _name=module.__name__, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "composite", spy)
    packed = make_packed(SMALL_COUNTS, seed=30)
    composite(**packed)
    composite(**packed, backend="torch")
    composite(**as_float64(packed))  # "auto" picks numba for float32 only
    assert calls == ["nerf.render.numba_kernels", "nerf.render.reference", "nerf.render.reference"]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(rgbs=torch.rand(5, 4)), "rgbs must have shape"),
        (dict(t_ends=torch.rand(4)), "t_ends must have shape"),
        (dict(ray_indices=torch.tensor([0, 0, 1, 1, 2], dtype=torch.int32)), "ray_indices must be int64"),
        (dict(ray_indices=torch.tensor([0, 1, 0, 1, 2])), "sorted"),
        (dict(ray_indices=torch.tensor([0, 0, 1, 1, 3])), r"\[0, n_rays=3\)"),
        (dict(sigmas=torch.rand(5, dtype=torch.float64)), "dtype"),
        (dict(background=torch.rand(2, 3)), "background must have shape"),
        (dict(n_rays=-1), "n_rays"),
        (dict(backend="cuda"), "unknown backend"),
        (dict(early_stop_eps=-1.0), "early_stop_eps"),
    ],
)
def test_invalid_inputs_name_the_mistake(change, message):
    args = dict(
        t_starts=torch.zeros(5),
        t_ends=torch.ones(5),
        ray_indices=torch.tensor([0, 0, 1, 1, 2]),
        sigmas=torch.rand(5),
        rgbs=torch.rand(5, 3),
        n_rays=3,
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        composite(**args)

"""Glow and the image pipeline: squeeze / split round trip, actnorm's data-dependent initialisation,
the LU 1 x 1 convolution's log-determinant, the whole flow against the autodiff Jacobian, identity
initialisation, the logit transform's Jacobian, bits per dimension, bad shapes."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from deep.flows import Glow, RealNVP
from deep.flows.digits import LogitFlow, LogitTransform, bits_per_dim, dequantize_levels
from deep.flows.glow import ActNorm, InvConv1x1, squeeze, unsqueeze
from inference.errors import DataError, ModelError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def float64_build():
    """Build modules in float64 (their random rotations are then orthogonal to float64 rounding)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def perturbed_glow(shape=(1, 4, 4), levels=2, seed=0):
    """A float64 Glow whose actnorms are initialised on data and whose weights are all perturbed."""
    flow = Glow(shape, hidden=4, levels=levels, steps=2, seed=seed).to(F64)
    flow.initialize(torch.rand(16, *shape, generator=gen(seed + 1), dtype=F64))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen(seed + 2), dtype=F64))
    return flow


def test_squeeze_and_split_round_trip():
    # invariant: squeeze is a permutation of the entries (same multiset, unsqueeze undoes it), with
    # pixel (c, 2i + di, 2j + dj) landing in channel 4c + 2di + dj at (i, j)
    h = torch.arange(2 * 3 * 4 * 6, dtype=F64).reshape(2, 3, 4, 6)
    s = squeeze(h)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze(s), h)
    assert torch.equal(torch.sort(s.flatten()).values, torch.sort(h.flatten()).values)
    assert float(s[1, 4 * 2 + 2 * 1 + 0, 1, 2]) == float(h[1, 2, 3, 4])
    # the multi-scale split: the latents of all levels concatenated invert back to the image exactly
    flow = perturbed_glow((2, 8, 8), levels=3)
    x = torch.rand(3, 2 * 64, generator=gen(3), dtype=F64)
    z, _ = flow.transform.inverse_and_log_det(x)
    assert z.shape == (3, 128) and flow.transform.latent_sizes == [64, 32, 32]
    # float64 rounding through ~20 layers: 1e-12
    assert torch.allclose(flow.transform.forward_and_log_det(z)[0], x, rtol=0, atol=1e-10)


def test_actnorm_data_dependent_initialisation():
    # oracle: after the first batch the output has per-channel mean 0 and standard deviation 1
    # (population moments over batch and pixels), up to float64 rounding and the 1e-6 guard on the std
    layer = ActNorm(3).to(F64)
    x = 5.0 + 3.0 * torch.randn(8, 3, 4, 4, generator=gen(4), dtype=F64)
    y, ladj = layer.inverse_and_log_det(x)
    flat = y.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(3, dtype=F64), rtol=0, atol=1e-12)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(3, dtype=F64), rtol=0, atol=1e-6)
    assert bool(layer.initialized)
    # the log-determinant is -HW sum_c log std_c
    std = x.transpose(0, 1).reshape(3, -1).std(1, unbiased=False)
    assert float(ladj[0].detach()) == pytest.approx(-16 * float(torch.log(std + 1e-6).sum()), abs=1e-10)
    # a second batch does not re-initialise
    loc = layer.loc.detach().clone()
    layer.inverse_and_log_det(x + 1.0)
    assert torch.equal(layer.loc.detach(), loc)


def test_invconv_lu_log_det():
    # oracle: slogdet of the assembled W (C x C) times the number of pixels; the layer starts as a
    # rotation (|det| = 1) and stays invertible with the inverse given by the matrix inverse
    with float64_build():
        layer = InvConv1x1(5, gen(5))
    w0 = layer.weight()
    assert torch.allclose(w0 @ w0.T, torch.eye(5, dtype=F64), rtol=0, atol=1e-12)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen(6), dtype=F64))
    x = torch.randn(2, 5, 3, 4, generator=gen(7), dtype=F64)
    y, ladj = layer.inverse_and_log_det(x)
    assert float(ladj[0].detach()) == pytest.approx(12 * float(torch.linalg.slogdet(layer.weight().detach())[1]), abs=1e-10)
    x2, ladj2 = layer.forward_and_log_det(y)
    assert torch.allclose(x2, x, rtol=0, atol=1e-10) and torch.allclose(ladj2, -ladj, rtol=0, atol=1e-12)


def test_glow_log_det_equals_autodiff_jacobian():
    # oracle: log|det| of the autodiff Jacobian of the whole multi-scale map, (16 x 16) on 1 x 4 x 4
    flow = perturbed_glow()
    z = torch.randn(2, 16, generator=gen(8), dtype=F64)
    x, ladj = flow.transform.forward_and_log_det(z)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow.transform.forward_and_log_det(v[None])[0][0], z[b])
        # float64 sums of ~50 O(1) terms: rounding 1e-14
        assert float(ladj[b].detach()) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-10)
    _, ladj_inv = flow.transform.inverse_and_log_det(x)
    assert torch.allclose(ladj_inv, -ladj, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_glow_inverse_round_trip(dtype, tol):
    flow = perturbed_glow((1, 8, 8)).to(dtype)
    x = torch.rand(8, 64, generator=gen(9), dtype=dtype)
    z, _ = flow.transform.inverse_and_log_det(x)
    # float32: pixels in [0, 1], ~30 layers each adding a few ulps (6e-8): ~1e-6 absolute
    assert torch.allclose(flow.transform.forward_and_log_det(z)[0], x, rtol=0, atol=tol)


def test_glow_with_identity_layers_is_the_base():
    # actnorm at (loc 0, scale 1), zero-initialised couplings, and 1 x 1 convolutions that are
    # rotations: every layer preserves N(0, I) (the squeezes and splits permute coordinates), so
    # log p(x) = log N(x; 0, I) exactly (float64 rounding through the rotations: 1e-12)
    with float64_build():
        flow = Glow((1, 4, 4), hidden=4, levels=2, steps=2, seed=0)
    for module in flow.modules():
        if isinstance(module, ActNorm):
            module.initialized.fill_(True)
    x = torch.randn(6, 1, 4, 4, generator=gen(10), dtype=F64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).flatten(1).sum(-1)
    assert torch.allclose(flow.log_prob(x), expected, rtol=0, atol=1e-12)
    # and dist() agrees with log_prob
    assert torch.allclose(flow.dist().log_prob(x.flatten(1)), expected, rtol=0, atol=1e-12)


def test_logit_transform_jacobian_and_bits_per_dim():
    # oracle: the autodiff derivative of v -> logit(alpha + (1 - 2 alpha) v), and the bpd formula
    t = LogitTransform(0.05)
    v = torch.rand(4, 3, generator=gen(11), dtype=F64)
    y, ladj = t.inverse_and_log_det(v)
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda u: t.inverse_and_log_det(u[None])[0][0], v[b])
        assert float(ladj[b]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-12)
    assert torch.allclose(t.forward_and_log_det(y)[0], v, rtol=0, atol=1e-12)
    # an untrained LogitFlow: log p_v = log N(y) + log-Jacobian, the two pieces summed by hand
    flow = LogitFlow(RealNVP(3, hidden=(4,), num_layers=2, seed=0).to(F64))
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(y).sum(-1) + ladj
    assert torch.allclose(flow.log_prob(v), expected, rtol=0, atol=1e-12)
    lp = flow.log_prob(v).detach()
    expected_bpd = float((-lp.mean() + 3 * math.log(17)) / (3 * math.log(2)))
    assert bits_per_dim(lp, 3, 17) == pytest.approx(expected_bpd, abs=1e-12)
    # dequantisation: (k + u) / L lies in [k / L, (k + 1) / L)
    k = torch.tensor([[0, 16, 7]])
    d = dequantize_levels(k, 17, generator=0)
    assert bool(((d >= k / 17) & (d < (k + 1) / 17)).all())


def test_bad_shapes_and_input_are_typed_errors():
    with pytest.raises(ModelError, match=r"divisible by 2\^levels = 4"):
        Glow((1, 6, 8), levels=2, seed=0)
    with pytest.raises(ModelError, match="shape must be"):
        Glow((8, 8), seed=0)
    flow = Glow((1, 8, 8), hidden=4, levels=2, steps=1, seed=0)
    with pytest.raises(DataError, match=r"expected images of shape \(B, 1, 8, 8\) or \(B, 64\), got \(2, 1, 4, 4\)"):
        flow.log_prob(torch.zeros(2, 1, 4, 4))
    with pytest.raises(DataError, match=r"got \(2, 63\)"):
        flow.log_prob(torch.zeros(2, 63))
    logit = LogitFlow(RealNVP(2, hidden=(4,), num_layers=2, seed=0))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        logit.log_prob(torch.tensor([[0.5, 1.5]]))
    with pytest.raises(DataError, match=r"\[0, 16\]"):
        dequantize_levels(torch.tensor([[17]]), 17, generator=0)
    with pytest.raises(ModelError, match="alpha"):
        LogitTransform(0.5)

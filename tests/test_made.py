"""MADE: normalisation by enumeration, the autoregressive Jacobian, the mixture over masks, the Pyro
program's trace against the one-pass log_prob, the sampler against enumerated probabilities."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from deep.made import MADE, MADENet, MaskedLinear, made_masks
from inference.errors import DataError, ModelError


pytestmark = pytest.mark.usefixtures("one_thread")


def _all_binary(dim):
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=dim)), dtype=torch.float64)  # (2^D, D)


def _perturbed(model, seed, scale=1.0):
    """float64 copy with random (non-trivial) weights, so that no conditional is near 1/2 by accident."""
    model = model.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


@pytest.mark.parametrize("num_masks", [1, 4])
def test_probabilities_over_every_binary_vector_sum_to_one(num_masks):
    # D = 12: all 4,096 vectors; the 1-mask model and the 4-mask mixture both normalise
    made = _perturbed(MADE(12, (24, 24), num_masks=num_masks, seed=0), seed=1)
    with torch.no_grad():
        total = made.log_prob(_all_binary(12)).exp().sum().item()
    # float64: 4,096 terms each with relative rounding ~1e-15 -> the sum is 1 to ~1e-12
    assert abs(total - 1.0) < 1e-10


def test_each_mask_set_normalises_and_the_mixture_is_their_probability_average():
    made = _perturbed(MADE(6, (10,), num_masks=3, seed=2), seed=3)
    x = _all_binary(6)
    with torch.no_grad():
        per = torch.stack([made.log_prob_mask(x, k).exp() for k in range(3)])  # (K, 64)
        mix = made.log_prob(x).exp()
    # each member is a distribution of its own ordering (float64 rounding over 64 terms)
    np.testing.assert_allclose(per.sum(1).numpy(), 1.0, atol=1e-12)
    # the mixture is the mean of probabilities, not of log-probabilities
    np.testing.assert_allclose(mix.numpy(), per.mean(0).numpy(), rtol=1e-12)
    geometric = per.log().mean(0).exp().sum().item()
    assert geometric < 1 - 1e-6  # a mean of logs would not normalise (strict: the members differ)
    # the mask sets really are different orderings
    assert len({tuple(o.tolist()) for o in made.net.orders}) == 3


@pytest.mark.parametrize("hidden", [(), (7,), (9, 9)])
def test_jacobian_is_strictly_triangular_in_the_ordering(hidden):
    dim, order = 6, torch.tensor([3, 0, 5, 1, 4, 2])
    net = _perturbed(MADENet(dim, hidden, out_per_dim=2, order=order, context_dim=2, seed=4,
                             activation=torch.nn.Tanh), seed=5)
    x = torch.randn(dim, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    ctx = torch.randn(1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    jac = torch.autograd.functional.jacobian(lambda v: net(v[None], ctx)[0], x)  # (D, P, D)
    pos = torch.empty(dim, dtype=torch.long)
    pos[order] = torch.arange(dim)
    allowed = pos[None, :] < pos[:, None]  # (D out, D in): input j strictly earlier than output i
    nonzero = jac.abs().amax(1) > 0  # (D, D)
    assert not (nonzero & ~allowed).any()  # exact zeros: masked weights contribute nothing
    if hidden == () or min(hidden) >= dim - 1:
        # with tanh (never flat) and hidden widths >= D - 1 every allowed dependency is realised
        assert torch.equal(nonzero, allowed)


def test_masks_from_degrees():
    degrees = torch.tensor([2, 1, 3])  # order (1, 0, 2)
    masks = made_masks(degrees, (4,), out_multiplier=2)
    hidden_deg = torch.tensor([1, 2, 1, 2])  # the cycle over [1, D - 1]
    assert torch.equal(masks[0], (hidden_deg[:, None] >= degrees[None]).float())
    out_deg = torch.tensor([2, 2, 1, 1, 3, 3])
    assert torch.equal(masks[1], (out_deg[:, None] > hidden_deg[None]).float())
    layer = MaskedLinear(3, 4, masks[0])
    assert torch.equal(layer(torch.eye(3)).detach(), (layer.weight * masks[0]).T.detach() + layer.bias.detach())


@pytest.mark.parametrize("num_masks", [1, 3])
def test_pyro_program_trace_matches_one_pass_log_prob(num_masks):
    import pyro.poutine as poutine
    from pyro.poutine.util import site_is_subsample

    made = _perturbed(MADE(5, (8,), num_masks=num_masks, seed=8), seed=9)
    x = made.sample(6, generator=10)
    per = []
    for k in range(num_masks):
        trace = poutine.trace(made.model).get_trace(x=x, mask_index=k)
        trace.compute_log_prob()
        sites = [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]
        assert [s["name"] for s in sites] == [f"x_{i}" for i in made.net.orders[k].tolist()]
        assert all(s["is_observed"] for s in sites)
        per.append(sum(s["log_prob"] for s in sites))  # (B,)
        # float64: D = 5 terms, each from the same arithmetic -> agreement to rounding
        np.testing.assert_allclose(per[-1].detach().numpy(), made.log_prob_mask(x, k).detach().numpy(), rtol=1e-12)
    mixture = torch.logsumexp(torch.stack(per), 0) - math.log(num_masks)
    np.testing.assert_allclose(mixture.detach().numpy(), made.log_prob(x).detach().numpy(), rtol=1e-12)


def test_state_dict_round_trip_keeps_the_active_mask_set():
    made = _perturbed(MADE(5, (8,), num_masks=3, seed=14), seed=15)
    x = made.sample(4, generator=16)
    expected = made.log_prob(x)
    made.net.use_mask(2)  # a checkpoint taken while set 2 is in the layers
    fresh = MADE(5, (8,), num_masks=3, seed=17).double()  # other weights, set 0 active
    fresh.load_state_dict(made.state_dict())
    assert fresh.net.mask_index == 2
    assert torch.equal(fresh.log_prob(x), expected)  # same weights, same masks: bit for bit


def test_program_without_data_draws_binary_vectors():
    made = MADE(4, (6,), seed=0)
    import pyro.poutine as poutine

    trace = poutine.trace(made.model).get_trace(n=3)
    assert trace.nodes["_RETURN"]["value"].shape == (3, 4)


def test_sampler_frequencies_match_enumerated_mixture():
    made = _perturbed(MADE(3, (6,), num_masks=2, seed=11), seed=12)
    n = 20000
    draws = made.sample(n, generator=13)
    codes = (draws * torch.tensor([4.0, 2.0, 1.0], dtype=draws.dtype)).sum(1).long()
    counts = np.bincount(codes.numpy(), minlength=8)
    with torch.no_grad():
        probs = made.log_prob(_all_binary(3)).exp().numpy()  # same binary order as the codes
    _, p_value = stats.chisquare(counts, probs * n)
    # a correct sampler fails this at rate 1e-3 (the seed is fixed, so the test is deterministic)
    assert p_value > 1e-3


def test_training_step_lowers_the_loss():
    made = MADE(8, (16,), num_masks=2, seed=0)
    x = (torch.rand(64, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.Adam(made.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = made.loss({"x": x}, g)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    with torch.no_grad():
        final = -made.log_prob(x).mean().item()
    # the data's own entropy under independent Bernoulli(0.3) is 8 * 0.611 = 4.89 nats; the
    # uniform model's 8 log 2 = 5.55 nats: training must get well below the start
    assert final < first - 0.3


def test_bad_input_raises_typed_errors_naming_the_culprit():
    made = MADE(4, (6,), seed=0)
    with pytest.raises(DataError, match="x: a Bernoulli likelihood needs 0/1"):
        made.log_prob(torch.full((2, 4), 0.5))
    with pytest.raises(DataError, match=r"x: expected shape \(B, 4\)"):
        made.log_prob(torch.zeros(2, 5))
    with pytest.raises(ModelError, match="order"):
        MADENet(3, (4,), order=[0, 0, 1])
    with pytest.raises(ModelError, match="seed"):
        MADE(4, (6,), num_masks=2)
    with pytest.raises(ModelError, match="dim"):
        MADE(0, (6,))
    net = MADENet(3, (4,), out_per_dim=2, context_dim=2)
    with pytest.raises(DataError, match="context"):
        net(torch.zeros(1, 3))
    with pytest.raises(DataError, match="n must be a positive integer"):
        made.sample(0, generator=0)

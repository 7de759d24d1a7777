"""NADE: normalisation by enumeration in any ordering, the one-pass log_prob against a plain loop
and against the Pyro program's trace, the sampler and the exact conditional sampler against
enumerated (conditional) probabilities by chi-square."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from deep.nade import NADE
from inference.errors import DataError, ModelError


pytestmark = pytest.mark.usefixtures("one_thread")


def _all_binary(dim):
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=dim)), dtype=torch.float64)  # (2^D, D)


def _nade(dim, hidden, seed):
    """float64 NADE with random non-zero biases (the default init leaves them at zero)."""
    nade = NADE(dim, hidden, seed=seed).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in nade.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return nade


def _codes(x):
    weights = 2.0 ** torch.arange(x.shape[1] - 1, -1, -1, dtype=x.dtype)  # itertools.product's order
    return (x * weights).sum(1).long()


@pytest.mark.parametrize("order", [None, [11, 3, 7, 0, 1, 10, 2, 9, 4, 8, 6, 5]])
def test_probabilities_over_every_binary_vector_sum_to_one(order):
    nade = _nade(12, 10, seed=0)
    with torch.no_grad():
        total = nade.log_prob(_all_binary(12), order).exp().sum().item()
    # float64: 4,096 terms each with relative rounding ~1e-15 -> the sum is 1 to ~1e-12
    assert abs(total - 1.0) < 1e-10


def test_one_pass_log_prob_equals_a_loop_over_conditionals_in_numpy():
    nade = _nade(6, 5, seed=1)
    order = np.array([2, 5, 0, 4, 1, 3])
    x = nade.sample(7, generator=2, order=order)
    W, c, V, b = (p.detach().numpy() for p in (nade.W, nade.c, nade.V, nade.b))
    sig = lambda a: 1 / (1 + np.exp(-a))
    expected = []
    for row in x.numpy():
        lp, seen = 0.0, np.zeros(6)
        for i in order:  # the definition, conditional by conditional
            p = sig(b[i] + V[i] @ sig(c + W @ seen))
            lp += np.log(p if row[i] else 1 - p)
            seen[i] = row[i]
        expected.append(lp)
    # float64: the cumulative sum reorders additions of 6 terms -> agreement to ~1e-14
    np.testing.assert_allclose(nade.log_prob(x, torch.tensor(order)).detach().numpy(), expected, rtol=1e-12)


def test_per_row_orderings_and_the_ensemble_is_a_mixture():
    nade = _nade(5, 4, seed=3)
    x = _all_binary(5)
    orders = nade.random_orders(3, generator=4)  # (3, 5)
    with torch.no_grad():
        per = torch.stack([nade.log_prob(x, o) for o in orders])  # (3, 32)
        rows = nade.log_prob(x.repeat(3, 1), orders.repeat_interleave(32, 0)).reshape(3, 32)
        mix = nade.ensemble_log_prob(x, orders).exp()
    np.testing.assert_allclose(rows.numpy(), per.numpy(), rtol=1e-13)  # same arithmetic, row-wise
    np.testing.assert_allclose(mix.numpy(), per.exp().mean(0).numpy(), rtol=1e-12)
    assert abs(mix.sum().item() - 1.0) < 1e-12  # 32 float64 terms
    # different orderings give different joints (it is one set of weights, not one distribution)
    assert (per[0] - per[1]).abs().max() > 1e-3


def test_pyro_program_trace_matches_one_pass_log_prob():
    import pyro.poutine as poutine
    from pyro.poutine.util import site_is_subsample

    nade = _nade(6, 5, seed=5)
    order = torch.tensor([4, 1, 5, 0, 3, 2])
    x = nade.sample(8, generator=6)
    trace = poutine.trace(nade.model).get_trace(x=x, order=order)
    trace.compute_log_prob()
    sites = [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]
    assert [s["name"] for s in sites] == [f"x_{i}" for i in order.tolist()]
    assert all(s["is_observed"] for s in sites)
    total = sum(s["log_prob"] for s in sites)  # (B,)
    # float64, 6 conditionals computed by a running sum vs a cumulative sum: rounding only
    np.testing.assert_allclose(total.detach().numpy(), nade.log_prob(x, order).detach().numpy(), rtol=1e-12)


def test_sampler_frequencies_match_enumeration():
    nade = _nade(4, 3, seed=7)
    order = torch.tensor([2, 0, 3, 1])
    n = 20000
    counts = np.bincount(_codes(nade.sample(n, generator=8, order=order)).numpy(), minlength=16)
    with torch.no_grad():
        probs = nade.log_prob(_all_binary(4), order).exp().numpy()
    _, p_value = stats.chisquare(counts, probs * n)
    assert p_value > 1e-3  # a correct sampler fails at rate 1e-3; the seed is fixed


def test_conditional_sampler_matches_the_enumerated_conditional():
    dim = 6
    nade = _nade(dim, 5, seed=9)
    mask = torch.tensor([False, True, False, True, True, False])  # x_1, x_3, x_4 observed
    x_obs = torch.tensor([[0.0, 1.0, float("nan"), 0.0, 1.0, float("nan")]], dtype=torch.float64)
    n = 20000
    filled = nade.conditional_sample(x_obs.expand(n, dim), mask, generator=10)
    assert torch.equal(filled[:, mask], x_obs[:, mask].expand(n, -1))  # the evidence is kept
    # oracle: the joint p_o(x) in the ordering o = (observed..., unobserved...) over the 8 completions
    order = torch.tensor([1, 3, 4, 0, 2, 5])
    completions = _all_binary(3)  # (8, 3) values of x_0, x_2, x_5
    full = torch.zeros(8, dim, dtype=torch.float64)
    full[:, mask] = x_obs[0, mask]
    full[:, ~mask] = completions
    with torch.no_grad():
        joint = nade.log_prob(full, order).exp()
    conditional = (joint / joint.sum()).numpy()
    counts = np.bincount(_codes(filled[:, ~mask]).numpy(), minlength=8)
    _, p_value = stats.chisquare(counts, conditional * n)
    assert p_value > 1e-3  # a correct sampler fails at rate 1e-3; the seed is fixed


def test_order_agnostic_loss_scores_the_batch_in_an_ordering_drawn_from_the_generator():
    nade = _nade(5, 4, seed=11)
    nade.order_agnostic = True
    x = nade.sample(9, generator=12)
    loss = nade.loss({"x": x}, torch.Generator().manual_seed(13))
    order = nade.random_orders(1, torch.Generator().manual_seed(13))[0]  # the same draw, replayed
    assert not torch.equal(order, torch.arange(5))  # not the default ordering
    expected = -torch.stack([nade.log_prob(x[i:i + 1], order)[0] for i in range(9)]).mean()
    assert abs(loss.item() - expected.item()) < 1e-12  # float64, same terms summed in another order
    losses = {round(nade.loss({"x": x}, torch.Generator().manual_seed(s)).item(), 9) for s in range(5)}
    assert len(losses) > 1  # other draws, other orderings
    loss.backward()  # and it is differentiable in every parameter
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nade.parameters())


def test_bad_input_raises_typed_errors_naming_the_culprit():
    nade = NADE(4, 3, seed=0)
    with pytest.raises(DataError, match="x: a Bernoulli likelihood needs 0/1"):
        nade.log_prob(torch.full((2, 4), 0.5))
    with pytest.raises(DataError, match=r"x: expected shape \(B, 4\)"):
        nade.log_prob(torch.zeros(2, 3))
    with pytest.raises(ModelError, match="order"):
        nade.log_prob(torch.zeros(2, 4), [0, 1, 1, 2])
    with pytest.raises(ModelError, match="order: row 1"):
        nade.log_prob(torch.zeros(2, 4), torch.tensor([[0, 1, 2, 3], [0, 0, 2, 3]]))
    with pytest.raises(DataError, match=r"x: observed entry \(0, 1\)"):
        nade.conditional_sample(torch.tensor([[0.0, 0.3, 1.0, 0.0]]), torch.tensor([True, True, False, False]), 0)
    with pytest.raises(DataError, match="mask: expected a boolean"):
        nade.conditional_sample(torch.zeros(1, 4), torch.ones(4), 0)
    with pytest.raises(ModelError, match="hidden"):
        NADE(4, 0)
    with pytest.raises(DataError, match="generator"):
        nade.sample(2, generator=None)


def test_example_runs_with_tiny_arguments(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "nade_digits.py"
    spec = importlib.util.spec_from_file_location("nade_digits", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = ex.main(ex.parse_args(["--steps", "3", "--hidden", "8", "--masks", "2", "--train-size", "100",
                                 "--test-size", "10", "--out", str(tmp_path)]))
    assert all(r.log_evidence_kind == "exact" for r in out["results"].values())
    assert all(p.exists() for p in out["pictures"].values())


def test_zoo_entry_on_12_pixel_crops_normalises_by_enumeration():
    from genzoo.registry import RunConfig
    from genzoo.zoo import ENTRIES

    entry = ENTRIES["nade"]
    problem = entry.problem({"pixels": 12, "hidden": 8, "masks": 2, "components": 3}, seed=0)
    assert problem.data["train"].shape[1] == 12
    config = RunConfig(seed=0, steps=5, progress=False)
    for name in ("nade", "made_masks", "mixture_em"):
        result = entry.method(name).fn(problem, config)
        scores = result.diagnostics["scores"]
        assert result.log_evidence_kind == "exact"
        # log sum_x p(x) over all 4,096 crops: 0 for a normalised model; float32 log-probs summed in
        # float64 leave ~4096 * 1e-7 relative error at most
        assert abs(scores["log sum p (enum)"]) < 1e-3
        n_test = len(problem.data["test"])
        assert abs(scores["NLL (nats)"] + result.log_evidence / n_test) < 1e-9
        assert abs(scores["bits/dim"] - scores["NLL (nats)"] / (12 * math.log(2))) < 1e-12
    again = entry.method("nade").fn(problem, config)  # trained once: the second call only evaluates
    assert again.diagnostics["scores"]["train s"] == problem.data["trained"]["nade"][1]

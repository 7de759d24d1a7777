"""MADE's exact conditional sampler (inpainting): sampled frequencies of the completions against the
conditional enumerated from the whole joint (every binary vector, float64), by chi-square, on both
routes (an ordering that puts the evidence first; enumeration of the completions), for the mixture
and for one mask set; bad input gets typed errors.

Significance: each chi-square test rejects a correct sampler with probability 1e-3 (p > 1e-3 is
asserted); the seeds are fixed, so the tests are deterministic."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deep.made import MADE
from inference.errors import DataError, ModelError


pytestmark = pytest.mark.usefixtures("one_thread")

N = 20000  # draws per conditional


def _made(dim, hidden, num_masks, seed, **options):
    """float64 MADE whose weights are moved by N(0, 1) noise, so that conditionals are far from 1/2."""
    made = MADE(dim, hidden, num_masks=num_masks, seed=seed, **options).double()
    flat = parameters_to_vector(made.parameters()).detach()
    noise = torch.randn(flat.shape, generator=torch.Generator().manual_seed(seed + 100), dtype=flat.dtype)
    vector_to_parameters(flat + noise, made.parameters())
    return made


def _enumerated_conditional(log_prob, x_row, mask):
    """p(x_U | x_O) over the completions of the unobserved variables, in the binary order of their
    codes (first unobserved variable most significant), from the joint over all 2^D vectors."""
    dim = mask.numel()
    table = torch.tensor(list(itertools.product((0.0, 1.0), repeat=dim)), dtype=torch.float64)  # (2^D, D)
    with torch.no_grad():
        joint = log_prob(table).exp()  # (2^D,)
    # float64 over <= 256 terms: a normalised joint sums to 1 to ~1e-14 (the oracle is itself checked)
    assert abs(joint.sum().item() - 1.0) < 1e-12
    consistent = (table[:, mask] == x_row[mask]).all(1)  # lexicographic order kept on the free columns
    kept = joint[consistent]
    return (kept / kept.sum()).numpy()


def _codes(values):
    weights = 2.0 ** torch.arange(values.shape[1] - 1, -1, -1, dtype=values.dtype)
    return (values * weights).sum(1).long().numpy()


def _chi_square_p(draws, mask, conditional):
    """The chi-square p-value of the completions in ``draws`` (n, D) against ``conditional``; cells
    expected fewer than 5 times are pooled into one (the chi-square approximation needs >= 5)."""
    counts = np.bincount(_codes(draws[:, ~mask]), minlength=conditional.size)
    expected = conditional * draws.shape[0]
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    return stats.chisquare(counts, expected).pvalue


def _evidence(dim, mask, seed):
    """One row of evidence: observed entries 0/1 from ``seed``, the others NaN (they are ignored)."""
    x = (torch.rand(1, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < 0.5).double()
    x[:, ~mask] = float("nan")
    return x


def test_one_mask_set_with_the_evidence_first_in_its_ordering():
    order = [3, 0, 6, 1, 5, 2, 4]
    made = _made(7, (12,), 1, seed=0, order=order)
    mask = torch.zeros(7, dtype=torch.bool)
    mask[order[:3]] = True  # x_3, x_0, x_6 observed: a prefix of the ordering (route 1)
    assert made.observed_first(mask).tolist() == [True]
    x = _evidence(7, mask, seed=1)
    filled = made.conditional_sample(x.expand(N, -1), mask, generator=2)
    assert torch.equal(filled[:, mask], x[:, mask].expand(N, -1))  # the evidence is kept
    assert bool(((filled == 0) | (filled == 1)).all())
    conditional = _enumerated_conditional(made.log_prob, x[0], mask)
    assert _chi_square_p(filled, mask, conditional) > 1e-3


def test_mixture_of_connectivities_weights_each_set_by_its_evidence_probability():
    # one ordering, 3 connectivities: the evidence is first in every set (route 1 with weights w_k)
    made = _made(6, (10,), 3, seed=3, order_agnostic=False)
    mask = torch.tensor([True, True, False, False, False, False])
    assert made.observed_first(mask).all()
    x = _evidence(6, mask, seed=4)
    filled = made.conditional_sample(x.expand(N, -1), mask, generator=5)
    conditional = _enumerated_conditional(made.log_prob, x[0], mask)  # the mixture's p(x_U | x_O)
    assert _chi_square_p(filled, mask, conditional) > 1e-3
    # power: the same draws reject the conditional with equal weights 1/K in place of w_k(x_O)
    per_set = [_enumerated_conditional(lambda v, k=k: made.log_prob_mask(v, k), x[0], mask) for k in range(3)]
    assert _chi_square_p(filled, mask, np.mean(per_set, 0)) < 1e-6


def test_mixture_of_orderings_by_enumeration_with_a_mask_per_row():
    made = _made(8, (16,), 3, seed=6)
    masks = torch.tensor([[True, False, False, True, False, True, False, False],
                          [False, True, True, False, True, True, True, False]])
    for m in masks:
        assert not made.observed_first(m).all()  # no ordering serves the mixture: route 2
    rows = torch.cat([_evidence(8, m, seed=7 + i).expand(N, -1) for i, m in enumerate(masks)])  # (2N, 8)
    row_masks = masks.repeat_interleave(N, 0)  # rows 0..N-1 get the first mask, the rest the second
    filled = made.conditional_sample(rows, row_masks, generator=9)
    for i, m in enumerate(masks):
        part = filled[i * N:(i + 1) * N]
        assert torch.equal(part[:, m], rows[i * N:(i + 1) * N][:, m])
        conditional = _enumerated_conditional(made.log_prob, rows[i * N], m)
        assert _chi_square_p(part, m, conditional) > 1e-3


@pytest.mark.parametrize("evidence_first", [True, False])
def test_mask_index_draws_from_that_sets_own_conditional(evidence_first):
    made = _made(6, (10,), 3, seed=10)
    k = 1
    order = made.net.orders[k]
    mask = torch.zeros(6, dtype=torch.bool)
    mask[order[:2] if evidence_first else order[-2:]] = True  # first or last two in set k's ordering
    assert bool(made.observed_first(mask)[k]) == evidence_first  # route 1, or route 2 (enumeration)
    x = _evidence(6, mask, seed=11)
    filled = made.conditional_sample(x.expand(N, -1), mask, generator=12, mask_index=k)
    conditional = _enumerated_conditional(lambda v: made.log_prob_mask(v, k), x[0], mask)
    assert _chi_square_p(filled, mask, conditional) > 1e-3


def test_same_generator_same_draws_and_full_evidence_is_returned_unchanged():
    made = MADE(5, (8,), num_masks=2, seed=0)
    x = made.sample(6, generator=1)
    mask = torch.tensor([True, False, True, False, True])
    a = made.conditional_sample(x, mask, generator=2)
    b = made.conditional_sample(x, mask, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert torch.equal(made.conditional_sample(x, torch.ones(5, dtype=torch.bool), generator=3), x)


def test_bad_input_raises_typed_errors_naming_the_culprit():
    made = MADE(4, (6,), num_masks=2, seed=0)
    x = torch.zeros(2, 4)
    with pytest.raises(DataError, match="mask: expected a boolean"):
        made.conditional_sample(x, torch.ones(4), 0)
    with pytest.raises(DataError, match=r"mask: expected shape \(4,\) or \(2, 4\), got \(5,\)"):
        made.conditional_sample(x, torch.ones(5, dtype=torch.bool), 0)
    with pytest.raises(DataError, match=r"x: expected shape \(B, 4\)"):
        made.conditional_sample(torch.zeros(2, 3), torch.ones(3, dtype=torch.bool), 0)
    with pytest.raises(DataError, match=r"x: observed entry \(1, 2\) is 0.5, not 0 or 1"):
        made.conditional_sample(torch.tensor([[0.0, 1, 0, 0], [0, 1, 0.5, 0]]), torch.ones(4, dtype=torch.bool), 0)
    with pytest.raises(ModelError, match="mask_index"):
        made.conditional_sample(x, torch.ones(4, dtype=torch.bool), 0, mask_index=2)
    with pytest.raises(ModelError, match="max_enumerate must be a non-negative integer, got -1"):
        made.conditional_sample(x, torch.ones(4, dtype=torch.bool), 0, max_enumerate=-1)
    # D = 16, 14 unobserved (> max_enumerate = 12) and no ordering puts the evidence first: no exact route
    big = MADE(16, (8,), num_masks=2, seed=1)
    orders = big.net.orders
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[int(orders[0, -1]), int(orders[1, -1])]] = True  # x_15 and x_14: last in one ordering each
    assert not big.observed_first(mask).any()
    evidence = torch.zeros(3, 16)
    with pytest.raises(ModelError, match=r"mask of row 0 \(observed variables .*mask set\(s\) \[0, 1\].*"
                                         r"max_enumerate=12.*deep.NADE"):
        big.conditional_sample(evidence, mask, 0)
    # with one set that puts the evidence first, the message names it as the way out
    mask = torch.zeros(16, dtype=torch.bool)
    mask[int(orders[1, 0])] = True
    assert big.observed_first(mask).tolist() == [False, True]
    with pytest.raises(ModelError, match=r"pass mask_index=1"):
        big.conditional_sample(evidence, mask, 0)
    assert big.conditional_sample(evidence, mask, 0, mask_index=1)[:, mask].eq(0).all()

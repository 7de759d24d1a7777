"""Sigmoid belief net: exact log-likelihood three ways, and ELBO <= IWAE_K <= exact with IWAE_K -> exact."""

import itertools
import math

import numpy as np
import pytest
import torch

from deep.sbn import SigmoidBeliefNet
from inference.errors import DataError, ModelError
from inference.likelihood import importance_log_likelihood, log_weights, seeded


def _random_sbn(seed, x_dim=6, layers=(2, 3)):
    with seeded(seed), torch.no_grad():  # the networks' weights, from a scoped generator
        sbn = SigmoidBeliefNet(x_dim=x_dim, layers=layers).double()  # float64: exact values to the last digits
        for p in sbn.parameters():
            p.copy_(torch.randn_like(p) * 1.5)
    return sbn


def _brute_force(sbn, x):
    """log p(x) by a plain loop over configurations with NumPy (a second implementation)."""
    sig = lambda a: 1 / (1 + np.exp(-a))
    top = sbn.top_logits.detach().double().numpy()
    downs = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in sbn.down]
    out = []
    for xb in np.asarray(x, dtype=np.float64):
        terms = []
        for bits in itertools.product((0, 1), repeat=sbn.num_latents):
            h = np.array(bits[: sbn.layers[0]], float)
            lp = np.sum(h * np.log(sig(top)) + (1 - h) * np.log(1 - sig(top)))
            offset = sbn.layers[0]
            for i, (w, b) in enumerate(downs):
                p = sig(w @ h + b)
                if i + 1 < len(sbn.layers):
                    nxt = np.array(bits[offset: offset + sbn.layers[i + 1]], float)
                    offset += sbn.layers[i + 1]
                else:
                    nxt = xb
                lp += np.sum(nxt * np.log(p) + (1 - nxt) * np.log(1 - p))
                h = nxt
            terms.append(lp)
        out.append(np.logaddexp.reduce(terms))
    return np.array(out)


def test_exact_log_likelihood_matches_brute_force_and_pyro_enumeration():
    from pyro.infer import TraceEnum_ELBO

    sbn = _random_sbn(0)
    x = torch.tensor(sbn.sample(seed=1, n=7))
    ours = sbn.log_prob(x)
    np.testing.assert_allclose(ours, _brute_force(sbn, x), rtol=1e-12, atol=0)
    # Pyro's own enumeration of the program (every latent site marked enumerable), empty guide
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(sbn.model, lambda x: None, x.double())
    assert abs(-loss.item() - ours.sum()) < 1e-11 * abs(ours.sum())


def test_exact_elbo_below_log_likelihood_and_chi_square_nonnegative():
    sbn = _random_sbn(1)
    x = torch.tensor(sbn.sample(seed=2, n=10))
    assert np.all(sbn.exact_elbo(x) <= sbn.log_prob(x) + 1e-9)
    assert np.all(sbn.chi_square(x) >= -1e-9)


def test_elbo_iwae_exact_ordering_and_iwae_bias_matches_chi_square_over_2k():
    sbn = _random_sbn(2, x_dim=5, layers=(2, 2))
    x = torch.tensor(sbn.sample(seed=3, n=1))
    exact, exact_elbo, chi2 = sbn.log_prob(x)[0], sbn.exact_elbo(x)[0], sbn.chi_square(x)[0]
    # ELBO by Monte Carlo (K log-weights averaged) agrees with the enumerated ELBO within 4 standard errors
    with seeded(0):
        lw = log_weights(sbn.model, sbn.guide, 20000, x=x)[:, 0].detach().numpy()
    assert abs(lw.mean() - exact_elbo) < 4 * lw.std() / math.sqrt(lw.size)
    # E[IWAE_K] from R independent replicates: non-decreasing in K, below exact, bias ~ chi^2 / 2K
    means = {}
    reps = 400
    for k in (1, 10, 100):
        vals = importance_log_likelihood(sbn.model, sbn.guide, {"x": x.expand(reps, -1)}, num_particles=k,
                                         seed=k, batch_size=None).diagnostics["per_datum"]
        means[k] = (vals.mean(), vals.std(ddof=1) / math.sqrt(reps))
    m1, se1 = means[1]
    assert abs(m1 - exact_elbo) < 4 * se1
    assert exact_elbo - 4 * se1 <= means[10][0] + 4 * means[10][1]
    assert means[1][0] < means[10][0] < means[100][0]
    assert means[100][0] <= exact + 4 * means[100][1]
    # the asymptotic bias chi^2 / 2K (Maddison et al. 2017) at K = 100, within 4 standard errors
    # plus the O(1/K^2) term's size (chi^2 / K)^2
    bias = exact - means[100][0]
    assert abs(bias - chi2 / 200) < 4 * means[100][1] + (chi2 / 100) ** 2
    # K = 5,000 in chunks: within 4 standard errors of the exact value's expected bias
    big = importance_log_likelihood(sbn.model, sbn.guide, {"x": x}, num_particles=5000, seed=7, chunk_size=700)
    assert big.log_evidence <= exact + 1e-6 + 4 * math.sqrt(chi2 / 5000)
    assert abs(big.log_evidence - exact) < 4 * math.sqrt(chi2 / 5000) + chi2 / 10000


def test_training_by_enumerated_elbo_raises_the_exact_log_likelihood():
    from deep.train import train

    teacher = _random_sbn(3, x_dim=6, layers=(2, 2))
    x = teacher.sample(seed=4, n=200)
    with seeded(5):
        student = SigmoidBeliefNet(x_dim=6, layers=(2, 2))
    before = student.log_prob(x).mean()
    result = train(student, {"x": x}, seed=0, steps=25, batch_size=200, learning_rate=0.05,
                   objective=SigmoidBeliefNet.enumerated_loss, num_threads=1)
    after = student.log_prob(x).mean()
    assert after > before
    # the final training loss is minus the exact ELBO, which bounds the exact log-likelihood
    assert -result.history[-1] <= after + 1e-4
    # A fitted model beats the truth on its own n = 200 draws by at most the MLE's excess, which
    # Wilks puts at chi2_k / (2n) per datum for k = 26 parameters (2 + 2x2 + 2 + 6x2 + 6): mean
    # 0.065, sd sqrt(2k) / (2n) = 0.018; Z = 4.5 of those above the mean: 0.146
    k = sum(p.numel() for name, p in student.named_parameters() if not name.startswith("up."))  # not the encoder
    n = x.shape[0]
    assert k == 26
    assert after <= teacher.log_prob(x).mean() + k / (2 * n) + 4.5 * math.sqrt(2 * k) / (2 * n)


def test_bad_inputs():
    with pytest.raises(ModelError, match="at most 12"):
        SigmoidBeliefNet(x_dim=4, layers=(8, 8))
    sbn = SigmoidBeliefNet(x_dim=4, layers=(2,))
    with pytest.raises(DataError, match="0/1"):
        sbn.log_prob(np.full((2, 4), 0.5))
    with pytest.raises(DataError, match="shape"):
        sbn.log_prob(np.zeros((2, 5)))
    with pytest.raises(DataError, match="NaN"):
        sbn.log_prob(np.array([[0, 1, np.nan, 0]]))

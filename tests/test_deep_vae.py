"""VAE / IWAE: the linear-Gaussian VAE reaches probabilistic PCA's optimum; estimators; DReG; bad input."""

import math

import numpy as np
import pytest
import torch

from deep.train import loss_function, train
from deep.vae import IWAE, VAE
from inference.errors import DataError, ModelError
from inference.likelihood import bits_per_dim, elbo, importance_log_likelihood, iwae_bound, seeded


def _ppca_data():
    """500 draws from a linear-Gaussian VAE (d = 5, q = 2) run as a simulator."""
    sim = VAE((5,), 2, hidden=(), likelihood="gaussian", data_range=None)
    with torch.no_grad():
        sim.decoder.body[0].weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.5], [0.5, 0.5], [-1.0, 0.3]]))
        sim.decoder.body[0].bias.copy_(torch.tensor([0.5, -0.2, 0.1, 0.0, 0.3]))
        sim.decoder.log_scale.fill_(math.log(0.4))
    return sim.sample(seed=0, n=500, mean=False).astype(np.float64)


def _gaussian_loglik(x, mean, cov):
    d = x.shape[1]
    chol = np.linalg.cholesky(cov)
    sol = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * (d * math.log(2 * math.pi) + 2 * np.log(np.diag(chol)).sum() + (sol**2).sum(0))


def test_linear_gaussian_vae_reaches_probabilistic_pca_closed_form():
    x = _ppca_data()
    n, d, q = x.shape[0], 5, 2
    # Tipping and Bishop (1999): sigma^2 = mean of the d - q smallest eigenvalues of the sample
    # covariance S; C = W W^T + sigma^2 I keeps S's top-q eigenpairs; the maximum log-likelihood
    # is -N/2 (d log 2 pi + sum_{i<=q} log lambda_i + (d - q) log sigma^2 + d).
    s = np.cov(x.T, bias=True)
    lam, vec = np.linalg.eigh(s)
    lam, vec = lam[::-1], vec[:, ::-1]
    sigma2 = lam[q:].mean()
    c_ml = vec[:, :q] @ np.diag(lam[:q] - sigma2) @ vec[:, :q].T + sigma2 * np.eye(d)
    ll_ml = -n / 2 * (d * math.log(2 * math.pi) + np.log(lam[:q]).sum() + (d - q) * math.log(sigma2) + d)
    assert abs(_gaussian_loglik(x, x.mean(0), c_ml).sum() - ll_ml) < 1e-9 * abs(ll_ml)

    with seeded(0):  # the networks' initial weights, from a scoped generator
        vae = VAE((d,), q, hidden=(), likelihood="gaussian", data_range=None)
    w0 = vae.decoder.body[0]
    start = _gaussian_loglik(x, w0.bias.detach().double().numpy(),
                             w0.weight.detach().double().numpy() @ w0.weight.detach().double().numpy().T
                             + math.exp(2 * float(vae.decoder.log_scale.detach())) * np.eye(d)).sum()
    # Adam on the full data set with a falling step (each stage a fresh Adam): the large steps cross
    # the plateaus, the last stage leaves the jitter derived below
    schedule = ((0.3, 300), (0.03, 150), (0.001, 150))
    for seed, (lr, steps) in enumerate(schedule, start=1):
        train(vae, {"x": x}, seed=seed, steps=steps, batch_size=n, learning_rate=lr, num_particles=4, num_threads=1)
    w = vae.decoder.body[0].weight.detach().double().numpy()
    b = vae.decoder.body[0].bias.detach().double().numpy()
    s2 = math.exp(2 * float(vae.decoder.log_scale.detach()))
    c = w @ w.T + s2 * np.eye(d)
    gap = (ll_ml - _gaussian_loglik(x, b, c).sum()) / n  # nats per datum
    assert gap >= -1e-9 * abs(ll_ml) / n  # the closed form is the maximum
    assert (ll_ml - start) / n > 0.5  # and the start was far from it

    # The jitter left by Adam's last stage (lr = 1e-3), as in tests/test_svi.py: a parameter
    # theta_i whose per-datum gradient has sd sigma_g,i (from the 4 particles; the batch is the
    # whole data set) hovers with sd sqrt(lr sigma_g,i / (2 H_i)), so it costs the objective
    # H_i sd^2 / 2 = lr sigma_g,i / 4 in expectation, whatever H_i. The log-likelihood is the ELBO
    # maximised over the encoder, so its gap is at most the ELBO's excess over the decoder's
    # parameters: E[gap] <= (lr / 4) sum_i sigma_g,i. The gap is a quadratic form in the jitters, so
    # Z^2 (Z = 4.5) times its mean bounds it even were it one chi2_1 (chance 7e-6). sigma_g is
    # measured at the fit from 16 draws of the loss's gradient. Measured over initial weights 0-7
    # (training seeds 100 i + 1, 2, 3): gaps 1.6e-5 to 2.1e-4 against bounds 2.8e-3 to 2.9e-3.
    loss, batch = loss_function("elbo", num_particles=4), {"x": torch.as_tensor(x)}
    grads = []
    for draw in range(16):
        vae.zero_grad()
        with seeded(1000 + draw):
            loss(vae, batch).backward()
        grads.append({name: p.grad.double().clone() for name, p in vae.decoder.named_parameters()})
    sigma_g = {name: torch.stack([g[name] for g in grads]).std(0) for name in grads[0]}
    lr, z = schedule[-1][0], 4.5
    gap_bound = z**2 * lr / 4 * sum(float(v.sum()) for v in sigma_g.values())
    assert gap < gap_bound
    # sigma^2 = exp(2 s): the per-datum objective's curvature in s is 2 d at the optimum, so s's sd
    # is sqrt(lr sigma_g,s / (4 d)) and sigma^2's relative sd twice that (measured: 4e-6 to 2.9e-3
    # against bounds 1.4e-2 to 1.5e-2)
    assert abs(s2 - sigma2) / sigma2 < z * 2 * math.sqrt(lr * float(sigma_g["log_scale"]) / (4 * d))
    # b enters the log-likelihood only through -(n/2) (b - xbar)^T C^-1 (b - xbar), and the rest is
    # at most ll_ml: exactly, (b - xbar)^T C^-1 (b - xbar) <= 2 gap
    dev = b - x.mean(0)
    assert dev @ np.linalg.solve(c, dev) <= 2 * gap_bound
    # C: to second order in E = C_ml^-1/2 (C - C_ml) C_ml^-1/2 the gap per datum is
    # (1/2) [tr(E^2 S') - tr(E^2) / 2], S' = C_ml^-1/2 S C_ml^-1/2 (eigenvalues 1 on the top q
    # directions, lambda_i / sigma^2 on the rest), so gap >= (k - 1/2) ||E||_F^2 / 2 with k the
    # smallest eigenvalue of S' (0.94 here). Measured ||E||_F: 0.008 to 0.028, twice sqrt(gap) each.
    ew, ev = np.linalg.eigh(c_ml)
    root = ev @ np.diag(ew**-0.5) @ ev.T  # C_ml^-1/2
    k = np.linalg.eigvalsh(root @ s @ root).min()
    assert np.linalg.norm(root @ (c - c_ml) @ root) < math.sqrt(2 * gap_bound / (k - 0.5))


def _conjugate():
    """z ~ N(0, 1), x | z ~ N(z, 1) per datum, and its exact posterior N(x/2, 1/2) as the guide."""
    import pyro
    import pyro.distributions as dist

    zero = torch.tensor(0.0, dtype=torch.float64)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(zero, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, shift=0.0):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2 + shift, 0.5**0.5))

    return model, guide


def test_estimators_on_a_conjugate_model():
    import pyro.distributions as dist

    model, guide = _conjugate()
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).double().sum().item()
    exact = float(torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), math.sqrt(2.0)).log_prob(x).sum())
    # with the exact posterior as proposal every weight equals p(x): all three estimates are exact
    for r in (elbo(model, guide, {"x": x}, seed=0, num_particles=3),
              iwae_bound(model, guide, {"x": x}, num_particles=7, seed=0),
              importance_log_likelihood(model, guide, {"x": x}, num_particles=5000, chunk_size=600, seed=0)):
        assert abs(r.log_evidence - exact) < 1e-12 * abs(exact)
    # a shifted proposal: KL(q || p) = shift^2 / (2 * 1/2) per datum, so the ELBO is exact - 3 shift^2
    shifted = lambda x: guide(x, shift=0.5)  # noqa: E731
    r = elbo(model, shifted, {"x": x}, seed=1, num_particles=4000)
    assert abs(r.log_evidence - (exact - 3 * 0.25)) < 4 * r.diagnostics["std_error"]
    big = importance_log_likelihood(model, shifted, {"x": x}, num_particles=5000, seed=2)
    assert r.log_evidence < big.log_evidence <= exact + 1e-3
    assert big.log_evidence_kind == "estimate" and r.log_evidence_kind == "lower_bound"


def test_dreg_gradients():
    """DReG: the decoder gradient equals the plain IWAE one draw for draw; the encoder gradient has
    the same expectation (unbiased), checked over replicates within 4 standard errors."""
    x = (np.random.default_rng(0).random((6, 4, 4)) > 0.5).astype(np.float32)
    with seeded(0):  # the networks' initial weights, from a scoped generator
        model = IWAE((4, 4), z_dim=2, hidden=(6,), num_particles=5)
    batch = {"x": torch.as_tensor(x)}
    dreg, plain = loss_function("iwae_dreg", num_particles=5), loss_function("iwae", num_particles=5)

    def grads(loss, seed):
        model.zero_grad()
        with seeded(seed):
            value = loss(model, batch)
        value.backward()
        return value.item(), {n: p.grad.clone() for n, p in model.named_parameters()}

    reps = 50
    enc = {"dreg": [], "plain": []}
    for seed in range(reps):
        v1, g1 = grads(dreg, seed)
        v2, g2 = grads(plain, seed)
        assert v1 == pytest.approx(v2, rel=1e-6)
        for name in g1:
            if name.startswith("decoder"):
                torch.testing.assert_close(g1[name], g2[name], rtol=1e-5, atol=1e-6)
        enc["dreg"].append(g1["encoder.body.0.weight"].flatten())
        enc["plain"].append(g2["encoder.body.0.weight"].flatten())
    a, b = torch.stack(enc["dreg"]).double(), torch.stack(enc["plain"]).double()
    diff = a - b
    z = diff.mean(0) / (diff.std(0) / math.sqrt(reps) + 1e-12)
    assert torch.all(z.abs() < 4.5), z.abs().max()


def test_dreg_refuses_non_reparameterised_guides():
    from deep.sbn import SigmoidBeliefNet

    sbn = SigmoidBeliefNet(x_dim=4, layers=(2,))
    with pytest.raises(ModelError):
        loss_function("iwae_dreg", num_particles=2)(sbn, {"x": torch.zeros(3, 4)})
    with pytest.raises(ModelError, match="reparameterised"):
        loss_function("iwae", num_particles=2)(sbn, {"x": torch.zeros(3, 4)})


def test_vae_iwae_train_and_sample_on_digits_subset():
    from genzoo.data import digits

    x = digits(binarize=True)["images"][:128]
    for cls in (VAE, IWAE):
        model = cls(z_dim=2, hidden=(16,))
        r = train(model, {"x": x}, seed=0, epochs=3, batch_size=64, learning_rate=1e-2, num_threads=1)
        assert r.history[-1] < r.history[0]
        images = model.sample(seed=0, n=5)
        assert images.shape == (5, 8, 8) and images.min() >= 0 and images.max() <= 1
        assert model.reconstruct(x[:3]).shape == (3, 8, 8)
        assert model.encode(x[:3]).shape == (3, 2)


def test_bad_images():
    vae = VAE(z_dim=2, hidden=(4,))
    with pytest.raises(DataError, match=r"\(B, 8, 8\)"):
        vae.model(np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match="NaN"):
        vae.model(np.where(np.eye(8, dtype=bool)[None], np.nan, 0.0))
    with pytest.raises(DataError, match=r"\[0.0, 1.0\]"):
        vae.model(np.full((1, 8, 8), 255.0))
    with pytest.raises(DataError, match="0/1"):
        vae.model(np.full((1, 8, 8), 0.5))
    gaussian = VAE(z_dim=2, hidden=(4,), likelihood="gaussian")
    gaussian.model(np.full((1, 8, 8), 0.5))  # grey levels are fine for Gaussian pixels
    with pytest.raises(DataError, match="likelihood"):
        VAE(likelihood="poisson")
    with pytest.raises(DataError):
        bits_per_dim([np.nan], 64)
    assert bits_per_dim([-64 * math.log(2)], 64) == pytest.approx(1.0, rel=1e-15)
    assert bits_per_dim([0.0], 64, levels=2) == pytest.approx(1.0, rel=1e-15)


def test_pyro_svi_fit_hosts_the_vae():
    """The shared ``inference.svi.fit`` trains the same programs (the networks are registered with
    ``pyro.module``), and leaves Pyro's global parameter store empty."""
    import pyro

    from inference import svi

    x = (np.random.default_rng(1).random((32, 8, 8)) > 0.5).astype(np.float32)
    vae = VAE(z_dim=2, hidden=(8,))
    before = vae.decoder.body[0].weight.detach().clone()
    names = set(pyro.get_param_store().keys())
    result = svi.fit(vae.model, {"x": x}, key=0, guide=vae.guide, steps=5, learning_rate=1e-2)
    assert result.log_evidence_kind == "lower_bound" and len(result.history) == 5
    assert not torch.equal(before, vae.decoder.body[0].weight.detach())
    assert set(pyro.get_param_store().keys()) == names

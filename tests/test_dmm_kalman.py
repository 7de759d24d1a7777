"""The deep Markov model with linear-Gaussian networks is a linear dynamical system: a Kalman filter
gives its marginal likelihood exactly, the exact posterior (in the DMM guide's factorisation) makes
the ELBO equal to it draw by draw, and any other guide's ELBO lies below it."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from deep.dmm import DMM
from deep.train import train
from inference.likelihood import seeded

Z_DIM, X_DIM, T = 2, 3, 5
RNG = np.random.default_rng(0)
A = np.array([[0.9, 0.2], [-0.1, 0.8]])
B = np.array([0.1, -0.2])
Q_SD = np.array([0.5, 0.3])
C = RNG.normal(size=(X_DIM, Z_DIM))
D = np.array([0.2, 0.0, -0.3])
R_SD = np.array([0.4, 0.6, 0.5])
Z0 = np.array([0.3, -0.4])


class LinearTransition(torch.nn.Module):
    """p(z_t | z_{t-1}) = N(A z + b, diag(q^2)): the DMM's transition made linear."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(Z_DIM, Z_DIM).double()
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(A))
            self.lin.bias.copy_(torch.tensor(B))

    def forward(self, z):
        return self.lin(z), torch.tensor(Q_SD).expand(z.shape)


def linear_dmm(seed=0):
    with seeded(seed):
        dmm = DMM(x_dim=X_DIM, z_dim=Z_DIM, transition_dim=4, emission_dim=4, rnn_dim=4, likelihood="gaussian",
                  name=f"lds{seed}").double()
    dmm.transition = LinearTransition()
    dmm.emitter.net = torch.nn.Linear(Z_DIM, X_DIM).double()
    with torch.no_grad():
        dmm.emitter.net.weight.copy_(torch.tensor(C))
        dmm.emitter.net.bias.copy_(torch.tensor(D))
        dmm.emitter.log_scale.copy_(torch.tensor(np.log(R_SD)))
        dmm.z_0.copy_(torch.tensor(Z0))
    return dmm


def kalman_loglik(x):
    """log p(x_{1:T}) of the LDS by the Kalman filter (float64, NumPy)."""
    Q, R = np.diag(Q_SD**2), np.diag(R_SD**2)
    mean, cov, total = Z0, np.zeros((Z_DIM, Z_DIM)), 0.0
    for t in range(len(x)):
        mean, cov = A @ mean + B, A @ cov @ A.T + Q  # predict z_t
        s = C @ cov @ C.T + R
        resid = x[t] - (C @ mean + D)
        total += -0.5 * (resid @ np.linalg.solve(s, resid) + np.linalg.slogdet(2 * np.pi * s)[1])
        gain = cov @ C.T @ np.linalg.inv(s)
        mean, cov = mean + gain @ resid, cov - gain @ C @ cov
    return total


def exact_guide_factory(x):
    """The exact posterior in the guide's factorisation, q(z_t | z_{t-1}, x_{t:T}) = p(z_t | z_{t-1}, x_{t:T}),
    from a backward information filter: beta_t(z) = p(x_{t+1:T} | z) ~ exp(-z'J_t z / 2 + h_t'z)."""
    qi, ri = np.diag(Q_SD**-2), np.diag(R_SD**-2)
    J, h = np.zeros((Z_DIM, Z_DIM)), np.zeros(Z_DIM)
    steps = []
    for t in reversed(range(T)):
        P = qi + C.T @ ri @ C + J  # precision of z_t given z_{t-1} and x_{t:T}
        cov = np.linalg.inv(P)
        offset = cov @ (qi @ B + C.T @ ri @ (x[t] - D) + h)  # loc = K z_{t-1} + offset
        gain = cov @ qi @ A
        steps.append((gain, offset, np.linalg.cholesky(cov)))
        J = A.T @ qi @ A - A.T @ qi @ cov @ qi @ A
        h = A.T @ qi @ cov @ (qi @ B + C.T @ ri @ (x[t] - D) + h) - A.T @ qi @ B
    steps = [tuple(torch.tensor(a) for a in s) for s in reversed(steps)]

    def guide(x=None, lengths=None):
        z_prev = torch.tensor(Z0)[None]  # (1, Z)
        with pyro.plate("data", 1):
            for t in pyro.markov(range(T)):
                gain, offset, tril = steps[t]
                loc = z_prev @ gain.T + offset  # (1, Z)
                z_prev = pyro.sample(f"z_{t + 1}", dist.MultivariateNormal(loc, scale_tril=tril))

    return guide


def _data():
    dmm = linear_dmm()
    with seeded(1), torch.no_grad():  # one sequence simulated through the program itself
        trace = poutine.trace(poutine.uncondition(dmm.model)).get_trace(
            x=torch.zeros(1, T, X_DIM, dtype=torch.float64), lengths=torch.tensor([T]))
    return torch.stack([trace.nodes[f"x_{t + 1}"]["value"][0] for t in range(T)])  # (T, X)


def test_exact_guide_makes_the_elbo_equal_the_kalman_likelihood_draw_by_draw():
    x = _data()
    exact = kalman_loglik(x.numpy())
    dmm = linear_dmm()
    guide = exact_guide_factory(x.numpy())
    data = {"x": x[None], "lengths": torch.tensor([T])}
    with seeded(2):
        for _ in range(5):
            # log p(x, z) - log q(z) = log p(x) for every z when q is the posterior: float64 rounding only
            elbo = -pyro.infer.Trace_ELBO().loss(dmm.model, guide, **data)
            assert elbo == pytest.approx(exact, abs=1e-9)


def test_the_learned_guide_bound_lies_below_the_kalman_likelihood():
    x = _data()
    exact = kalman_loglik(x.numpy())
    dmm = linear_dmm()
    for module in (dmm.transition, dmm.emitter):  # the model is fixed; only the guide learns
        for p in module.parameters():
            p.requires_grad_(False)
    dmm.z_0.requires_grad_(False)
    data = {"x": x[None], "lengths": torch.tensor([T])}
    train(dmm, data, seed=0, steps=150, batch_size=1, learning_rate=1e-2)
    with seeded(3):
        draws = np.array([-pyro.infer.Trace_ELBO().loss(dmm.model, dmm.guide, **data) for _ in range(400)])
    # Each draw of log p(x, z) - log q(z) has mean ELBO <= log p(x); the mean of 400 draws is within
    # 4.5 standard errors of it, so it cannot exceed log p(x) by more than that.
    se = draws.std() / math.sqrt(len(draws))
    assert draws.mean() <= exact + 4.5 * se
    assert draws.std() > 0  # a learned guide is not the posterior: the weights vary

"""A corpus of wrong inputs to the inference layer's samplers, SVI and the training loop.

Each case asserts the error type and that the message names the culprit (the argument, site or
value at fault); none may pass silently or escape as an error from inside JAX, NumPyro or torch.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import inference  # noqa: F401  (float64)
from inference import langevin, mcmc, svi
from inference.errors import DataError, ModelError, UnknownNameError
from inference.rng import as_generator, as_key, check_seed
from pgm.conjugate import NormalNormal

NN = NormalNormal(prior_loc=0.0, prior_scale=2.0, noise_scale=1.0)
X = np.array([0.5, 1.5, 1.0])


def gauss(x):
    return -0.5 * jnp.sum(x**2)


# --------------------------------------------------------------------------- seeds and keys
@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "7", None, True, np.zeros(3), jnp.zeros(2)])
def test_as_key_refuses(bad):
    with pytest.raises(DataError, match="key"):
        as_key(bad)


@pytest.mark.parametrize("bad", [-5, 0.5, "seed", None, False])
def test_as_generator_and_check_seed_refuse(bad):
    with pytest.raises(DataError, match="generator"):
        as_generator(bad)
    with pytest.raises(DataError, match="seed"):
        check_seed(bad)


# --------------------------------------------------------------------------- SVI
SVI_CASES = [
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"steps": -5}, "steps must be an integer >= 1"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"num_particles": 0}, "num_particles must be an integer >= 1"),
    ({"num_samples": -1}, "num_samples must be an integer >= 0"),
    ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 10}, "batch_size must be in 1..3"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive finite number"),
    ({"learning_rate": 0.0}, "learning_rate must be a positive finite number"),
    ({"learning_rate": math.inf}, "learning_rate must be a positive finite number"),
    ({"learning_rate": math.nan}, "learning_rate must be a positive finite number"),
    ({"key": "zero"}, "key must be a JAX PRNG key"),
    ({"key": -3}, "key must be an integer"),
    ({"guide": "gaussian"}, "unknown guide 'gaussian'"),
    ({"elbo": "elbo2"}, "unknown elbo 'elbo2'"),
    ({"elbo": "iwae", "num_particles": 1}, "num_particles >= 2"),
]


@pytest.mark.parametrize("kwargs,match", SVI_CASES)
def test_svi_refuses(kwargs, match):
    kwargs = {"key": 0, "steps": 2, **kwargs}
    with pytest.raises((DataError, UnknownNameError), match=match):
        svi.fit(NN.model, {"x": X}, **kwargs)


def test_svi_refuses_nan_data_naming_the_site():
    with pytest.raises(DataError, match="'x'.*NaN"):
        svi.fit(NN.model, {"x": np.array([1.0, np.nan])}, key=0, steps=1)


# --------------------------------------------------------------------------- MCMC
MCMC_CASES = [
    ({"num_samples": 0}, "num_samples must be an integer >= 1"),
    ({"num_samples": 2.0}, "num_samples must be an integer"),
    ({"num_warmup": -1}, "num_warmup must be an integer >= 0"),
    ({"num_chains": 0}, "num_chains must be an integer >= 1"),
    ({"thinning": 0}, "thinning must be an integer >= 1"),
    ({"key": 1.5}, "key must be a JAX PRNG key"),
]


@pytest.mark.parametrize("kwargs,match", MCMC_CASES)
def test_nuts_refuses(kwargs, match):
    kwargs = {"key": 0, "num_samples": 5, "num_warmup": 5, **kwargs}
    with pytest.raises(DataError, match=match):
        mcmc.nuts(NN.model, {"x": X}, **kwargs)


@pytest.mark.parametrize("step_size", [0.0, -1.0, math.inf, math.nan, "big"])
def test_hmc_refuses_step_sizes(step_size):
    with pytest.raises(DataError, match="step_size must be a positive finite number"):
        mcmc.hmc(NN.model, {"x": X}, key=0, num_samples=5, num_warmup=5, step_size=step_size)


def test_nuts_accepts_an_int_seed_and_reports_unmixed_chains():
    r = mcmc.nuts(NN.model, {"x": X}, key=3, num_samples=20, num_warmup=20, num_chains=2)
    # 40 draws cannot reach an ESS of 100: the result says so, naming the site
    assert any(w.startswith("mu:") and "ESS" in w for w in r.diagnostics["warnings"])


# --------------------------------------------------------------------------- Langevin
@pytest.mark.parametrize("step_size", [0.0, -0.1, math.inf, math.nan, "0.1", None])
def test_langevin_kernels_refuse_step_sizes(step_size):
    for make in (lambda: langevin.ula(gauss, step_size), lambda: langevin.mala(gauss, step_size),
                 lambda: langevin.ula_torch(lambda x: -(x**2).sum(-1), step_size)):
        with pytest.raises(DataError, match="step_size"):
            make()


LANGEVIN_RUN_CASES = [
    ({"num_steps": 0}, "num_steps must be an integer >= 1"),
    ({"num_steps": 10.0}, "num_steps must be an integer"),
    ({"burn_in": -1}, "burn_in must be an integer >= 0"),
    ({"burn_in": 10}, "must exceed burn_in"),
    ({"num_chains": 0}, "num_chains must be an integer >= 1"),
]


@pytest.mark.parametrize("kwargs,match", LANGEVIN_RUN_CASES)
def test_langevin_run_refuses(kwargs, match):
    kwargs = {"num_steps": 10, **kwargs}
    num_steps = kwargs.pop("num_steps")
    with pytest.raises(DataError, match=match):
        langevin.run(langevin.ula(gauss, 0.1), 0, jnp.zeros(2), num_steps, **kwargs)
    with pytest.raises(DataError, match=match):
        langevin.run_torch(langevin.ula_torch(lambda x: -(x**2).sum(-1), 0.1), 0, torch.zeros(2), num_steps, **kwargs)


def test_langevin_run_takes_int_seeds_and_refuses_bad_keys():
    r = langevin.run(langevin.ula(gauss, 0.1), 7, jnp.zeros(2), 20)
    assert r.samples["x"].shape == (20, 2)
    with pytest.raises(DataError, match="key"):
        langevin.run(langevin.ula(gauss, 0.1), "seven", jnp.zeros(2), 20)
    with pytest.raises(DataError, match="generator"):
        langevin.run_torch(langevin.ula_torch(lambda x: -(x**2).sum(-1), 0.1), 2.5, torch.zeros(2), 20)


def test_a_log_density_returning_nan_is_named():
    with pytest.raises(ModelError, match="site 'x'.*NaN"):
        langevin.run(langevin.ula(lambda x: jnp.sum(x) * jnp.nan, 0.1), 0, jnp.zeros(2), 20)
    with pytest.raises(ModelError, match="NaN"):
        langevin.run_torch(langevin.ula_torch(lambda x: (x * math.nan).sum(-1), 0.1), 0, torch.zeros(2), 20)

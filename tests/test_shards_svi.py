"""SVI (NumPyro and Pyro programs) and deep.train read a sharded dataset a minibatch at a time:
one epoch of minibatch losses averages to the full-data loss (unbiased N / B scaling), and nothing
else about the fit changes."""

import jax
import numpy as np
import numpyro
import pytest
import torch

import inference  # noqa: F401  (float64)
from inference import svi
from inference.errors import DataError
from inference.shards import write_shards
from pgm.conjugate import NormalNormal, simulate

NN = NormalNormal(prior_loc=0.0, prior_scale=2.0, noise_scale=1.0)
X = np.asarray(simulate(NN.model, jax.random.PRNGKey(0), n=20)["x"])


def test_numpyro_svi_on_shards_is_unbiased(tmp_path):
    data = write_shards(tmp_path / "x", {"x": X}, rows_per_shard=6)
    # a point-mass guide makes each loss deterministic; with a zero step the parameters stay put, so
    # one epoch of 4 batches of 5 must average to the full-data loss (the N/B scaling is unbiased)
    kwargs = dict(key=jax.random.PRNGKey(9), guide="delta", optimizer=numpyro.optim.SGD(0.0))
    full = svi.fit(NN.model, {"x": X}, steps=1, **kwargs)
    streamed = svi.fit(NN.model, data, steps=4, batch_size=5, **kwargs)
    assert np.mean(streamed.history) == pytest.approx(full.history[0], abs=1e-10)
    assert np.ptp(streamed.history) > 0  # the batches do differ
    with pytest.raises(DataError, match="give batch_size"):
        svi.fit(NN.model, data, steps=1, **kwargs)


def pyro_normal_normal(x):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=x.dtype), 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_pyro_svi_on_shards_is_unbiased(tmp_path):
    data = write_shards(tmp_path / "x", {"x": X}, rows_per_shard=6)

    def point(x):
        import pyro
        import pyro.distributions as dist

        pyro.sample("mu", dist.Delta(pyro.param("m", torch.tensor(0.3, dtype=torch.float64))))

    opt = lambda: __import__("pyro").optim.SGD({"lr": 0.0})  # noqa: E731 - the parameters stay put
    full = svi.fit(pyro_normal_normal, {"x": torch.as_tensor(X)}, key=1, guide=point, steps=1, optimizer=opt())
    streamed = svi.fit(pyro_normal_normal, data, key=1, guide=point, steps=4, batch_size=5, optimizer=opt(),
                       backend="pyro", num_samples=3)
    # the sharded loop puts data in the program's precision (float64 here): the same loss up to rounding
    assert np.mean(streamed.history) == pytest.approx(full.history[0], rel=1e-12)
    assert np.ptp(streamed.history) > 0
    assert streamed.samples["mu"].shape[0] == 3


def test_deep_train_on_shards(tmp_path):
    from deep.train import train
    from deep.vae import VAE
    from inference.likelihood import seeded

    x = (np.random.default_rng(0).random((40, 16)) > 0.5).astype(np.float32)
    data = write_shards(tmp_path / "img", {"x": x}, rows_per_shard=16)
    with seeded(0):
        model = VAE((16,), z_dim=2, hidden=(8,))
    r = train(model, data, seed=0, steps=6, batch_size=10, jit=False)
    assert r.history.shape == (6,) and np.isfinite(r.history).all()
    assert r.log_evidence == pytest.approx(-r.diagnostics["mean_loss_last_epoch"] * 40)

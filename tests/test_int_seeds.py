"""An int seed is accepted wherever a key is, and means jax.random.PRNGKey(seed): the same draws.

One case per public sampler of the discrete layer (the project's seed rule, inference/rng.py);
each runs the method twice, with ``seed`` and with ``PRNGKey(seed)``, and the two results must be
identical (the same key gives the same floating-point operations, so equality is exact). A value
that is neither (a float, a negative int) is refused with a DataError naming the argument.
"""

import jax
import numpy as np
import pytest

from genzoo.data import bn_network_path
from inference import chain, exact, gibbs, importance, meanfield
from inference.errors import DataError
from pgm.bayesnet import BayesNet
from pgm.bn_learning import random_cpts
from pgm.hmm import HMM
from pgm.mrf import MarkovNet


@pytest.fixture(scope="module")
def asia():
    return BayesNet.from_bif(bn_network_path("asia"))


HMM2 = HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]])
X = np.array([0, 1, 1, 0, 1])


PAIR = MarkovNet({"a": 2, "b": 2}, {("a", "b"): np.array([[2.0, 1.0], [1.0, 3.0]])})


def _cases(asia):
    return {
        "chain.sample": lambda k: chain.sample(HMM2, k, 4, X).samples,
        "exact.sample (HMM)": lambda k: exact.sample(HMM2, k, 4, X).samples,
        "exact.sample (BN)": lambda k: exact.sample(asia, k, 4, {"dysp": "yes"}).samples,
        "gibbs": lambda k: gibbs.gibbs(asia, k, 20, {"dysp": "yes"}, burn_in=5, chains=2).marginals,
        "likelihood_weighting": lambda k: importance.likelihood_weighting(asia, k, 200, {"dysp": "yes"}).marginals,
        "mean_field": lambda k: meanfield.mean_field(asia, {"dysp": "yes"}, key=k, steps=5).marginals,
        "random_cpts": lambda k: {v: random_cpts(asia, k).cpt(v) for v in asia.variables},
        "MarkovNet.sample": lambda k: PAIR.sample(k, 4),
    }


@pytest.mark.parametrize("name", ["chain.sample", "exact.sample (HMM)", "exact.sample (BN)", "gibbs",
                                  "likelihood_weighting", "mean_field", "random_cpts", "MarkovNet.sample"])
def test_an_int_seed_is_the_key_it_names(asia, name):
    run = _cases(asia)[name]
    with_int, with_key = run(3), run(jax.random.PRNGKey(3))
    assert with_int.keys() == with_key.keys()
    for site in with_int:
        np.testing.assert_array_equal(np.asarray(with_int[site]), np.asarray(with_key[site]), err_msg=site)


@pytest.mark.parametrize("bad", [-1, 2.5, "0"])
def test_a_bad_seed_is_named(asia, bad):
    with pytest.raises(DataError, match="key"):
        chain.sample(HMM2, bad, 2, X)
    with pytest.raises(DataError, match="key"):
        gibbs.gibbs(asia, bad, 10, burn_in=1, chains=1)

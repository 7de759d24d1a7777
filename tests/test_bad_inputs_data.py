"""Wrong inputs to the models and their data (issue 13's library-level list): evidence of
probability zero in Gibbs, parameters that are not distributions, empty corpora, corrupt or
oversized BIF files, a collapsing Gaussian mixture, images with a NaN pixel.

Each case asserts the error type and that the message names the culprit. The issue's cases on
SVI, HMC and Langevin arguments and a NaN log-density are in ``tests/test_bad_inputs.py``.
"""

import gzip
import re

import numpy as np
import pytest

import inference  # noqa: F401  (float64)
from genzoo.data import bn_network_path
from inference.errors import DataError, EvidenceError, MemoryBudgetError, ModelError, ParseError
from pgm.bayesnet import BayesNet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def asia():
    return BayesNet.from_bif(bn_network_path("asia"))


# --------------------------------------------------------------------------- evidence
def test_gibbs_refuses_evidence_of_probability_zero(asia):
    # either = tub OR lung deterministically: either=yes with tub=lung=no is impossible. The three
    # are all observed, so their CPT enters no free variable's draw; it must still enter the weight.
    from inference.gibbs import gibbs

    with pytest.raises(EvidenceError, match=r"evidence \{.*'either': 'yes'\} has probability zero"):
        gibbs(asia, 0, 10, {"either": "yes", "lung": "no", "tub": "no"}, burn_in=5, chains=2)


def test_gibbs_still_starts_under_deterministic_evidence():
    # c = a OR b deterministically; c=1 with b=0 forces a=1: every draw, hence the marginal, is
    # exactly (0, 1). With c=1, b=0 and a clamped to 0 it is impossible (all three observed).
    from inference.factors import Factor, FactorGraph
    from inference.gibbs import gibbs

    with np.errstate(divide="ignore"):
        or_table = np.log([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])  # [a, b, c]
    g = FactorGraph({v: ("0", "1") for v in "abc"}, [Factor(("a", "b", "c"), or_table)])
    r = gibbs(g, 0, 5, {"c": "1", "b": "0"}, burn_in=2, chains=2)
    assert r.marginals["a"].tolist() == [0.0, 1.0]
    with pytest.raises(EvidenceError, match="has probability zero"):
        gibbs(g, 0, 5, {"c": "1", "b": "0", "a": "0"}, burn_in=2, chains=2)


@pytest.mark.parametrize("text", ["xray=yes,xray=no", "xray=yes, xray = yes"])
def test_evidence_text_naming_a_variable_twice_is_refused(text):
    # the text the CLI's --evidence takes; before: the last value silently won
    from genzoo.zoo._common import parse_evidence

    with pytest.raises(EvidenceError, match="evidence gives variable 'xray' twice"):
        parse_evidence(text)


@pytest.mark.parametrize("evidence", [[("xray", "yes"), ("xray", "no")], "xray=yes"])
def test_evidence_must_be_a_mapping(asia, evidence):
    # a list of pairs could name one variable twice; only a mapping (one value per key) is taken
    from inference import exact

    with pytest.raises(EvidenceError, match="evidence must be a mapping"):
        exact.marginals(asia, evidence)


# --------------------------------------------------------------------------- model parameters
def _gmm(weights):
    from pgm.mixture import GaussianMixture

    return GaussianMixture(weights, [[0.0], [1.0]], [[[1.0]], [[1.0]]])


def _naive_bayes(class_probs, probs):
    from pgm.naive_bayes import NaiveBayes

    return NaiveBayes(class_probs, "bernoulli", {"probs": probs})


def _plsa(doc_topic, topic_word):
    from pgm.topics.plsa import PLSA

    return PLSA(doc_topic, topic_word)


HALF = [[0.5, 0.5], [0.5, 0.5]]
PARAMETER_CASES = [
    (lambda: _gmm([np.nan, np.nan]), "weights must be non-negative and sum to 1, got sum nan"),
    (lambda: _gmm([0.5, np.nan]), "weights must be non-negative and sum to 1"),
    (lambda: _gmm([1.5, -0.5]), "weights must be non-negative"),
    (lambda: _naive_bayes([np.nan, np.nan], np.full((2, 2), 0.5)), r"class_probs must be a probability vector.*nan"),
    (lambda: _naive_bayes([0.5, 0.5], np.array([[0.5, np.nan], [0.5, 0.5]])), r"params\['probs'\] holds NaN"),
    (lambda: _plsa([[0.5, 0.7]], HALF), "doc_topic row 0 is not a probability distribution"),
    (lambda: _plsa([[0.5, 0.5]], [[0.5, 0.5], [0.9, 0.5]]), "topic_word row 1 is not a probability distribution"),
    (lambda: _plsa([[np.nan, 0.5]], HALF), r"doc_topic row 0 .*sum nan"),
    (lambda: _plsa([[1.5, -0.5]], HALF), "doc_topic row 0 .*min -0.5"),
    (lambda: _plsa([0.5, 0.5], HALF), r"doc_topic must be a matrix, got shape \(2,\)"),
]


@pytest.mark.parametrize("make,match", PARAMETER_CASES)
def test_parameters_that_are_not_distributions_are_refused(make, match):
    with pytest.raises(ModelError, match=match):
        make()


# --------------------------------------------------------------------------- empty data
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0)])
def test_fit_plsa_refuses_an_empty_corpus(shape):
    # before: (0, 5) returned log evidence 0 marked "exact"
    from pgm.topics.plsa import fit_plsa

    with pytest.raises(DataError, match=re.escape(f"the corpus is empty: counts have shape {shape}")):
        fit_plsa(0, np.zeros(shape), 1)


@pytest.mark.parametrize("method", ["svi", "nuts"])
def test_empty_data_to_a_program_is_named(method):
    # before: "the program failed after site 'mu': AssertionError: size of plate should be positive"
    from inference import mcmc, svi
    from pgm.conjugate import NormalNormal

    model = NormalNormal(prior_loc=0.0, prior_scale=2.0, noise_scale=1.0).model
    run = {"svi": lambda: svi.fit(model, {"x": np.zeros(0)}, key=0, steps=2),
           "nuts": lambda: mcmc.nuts(model, {"x": np.zeros(0)}, key=0, num_samples=5, num_warmup=5)}[method]
    with pytest.raises(DataError, match=r"data 'x' is empty \(shape \(0,\)\)"):
        run()


def test_naive_bayes_refuses_no_rows():
    # before: NumPy's "zero-size array to reduction operation maximum"
    from pgm.naive_bayes import NaiveBayes

    with pytest.raises(DataError, match="x and y hold no rows"):
        NaiveBayes.fit(np.zeros((0, 2)), np.zeros(0, dtype=int), "bernoulli")


def test_deep_training_refuses_empty_data():
    from deep import recipes

    with pytest.raises(DataError, match="data is empty"):
        recipes.fit(np.zeros((0, 4, 4), np.float32), seed=0, epochs=1, hidden=(8,), num_particles=1)


def test_a_nan_pixel_is_named_by_its_row_in_the_users_data():
    # the row of the user's array (image 3), not its position in a shuffled minibatch
    from deep import recipes

    images = (np.random.default_rng(0).random((20, 4, 4)) > 0.5).astype(np.float32)
    images[3, 1, 2] = np.nan
    with pytest.raises(DataError, match=r"pixel 6 of image 3 is nan"):
        recipes.fit(images, seed=0, epochs=1, batch_size=8, hidden=(8,), num_particles=1)


# --------------------------------------------------------------------------- BIF files
def test_a_corrupt_bif_gz_is_a_parse_error_naming_the_file(tmp_path):
    good = gzip.compress(bn_network_path("asia").read_bytes())
    path = tmp_path / "asia.bif.gz"
    path.write_bytes(good[:10] + b"garbage" * 20 + good[200:])  # a bad deflate block (zlib.error)
    with pytest.raises(ParseError, match=re.escape(f"{path}: corrupted gzip data")):
        BayesNet.from_bif(path)


def _star_bif(n_parents: int, k: int) -> str:
    """One child of ``n_parents`` parents, all of ``k`` states; the child's table by ``default``."""
    states = ", ".join(f"s{j}" for j in range(k))
    row = ", ".join([repr(1 / k)] * k)
    text = "network star {}\n"
    text += "".join(f"variable v{i} {{ type discrete [ {k} ] {{ {states} }}; }}\n" for i in range(n_parents + 1))
    text += "".join(f"probability ( v{i} ) {{ table {row}; }}\n" for i in range(n_parents))
    parents = ", ".join(f"v{i}" for i in range(n_parents))
    return text + f"probability ( v{n_parents} | {parents} ) {{ default {row}; }}\n"


@pytest.mark.parametrize("n_parents,entries", [(12, "10,000,000,000,000"), (30, f"{10**31:,}")])
def test_a_bif_table_over_the_memory_budget_is_refused_before_allocation(tmp_path, n_parents, entries):
    # 10^12 rows x 10 states, and 10^31 (past int64): a MemoryBudgetError naming the table, not
    # NumPy's bare MemoryError or an overflowed row count
    path = tmp_path / "star.bif"
    path.write_text(_star_bif(n_parents, 10))
    with pytest.raises(MemoryBudgetError, match=rf"star.bif, line \d+: the CPT of 'v{n_parents}' .* "
                                                rf"needs a table of {entries} entries"):
        BayesNet.from_bif(path)


# --------------------------------------------------------------------------- a collapsing mixture
@pytest.mark.parametrize("covariance_type,cov", [("full", [[[1.0]], [[1.0]]]), ("diag", [[1.0], [1.0]]),
                                                 ("spherical", [1.0, 1.0])])
def test_a_component_collapsing_onto_a_point_is_named(covariance_type, cov):
    # three copies of 0.0 own component 0: its variance is 0 up to rounding and reg_covar=0 leaves it
    # there (before: variances of 1e-38, or a monotonicity error, without naming the cause)
    from inference import em
    from pgm.mixture import GaussianMixture

    x = np.array([[0.0], [0.0], [0.0], [5.0], [5.1], [4.9]])
    start = GaussianMixture([0.5, 0.5], [[0.0], [5.0]], cov, covariance_type, reg_covar=0.0)
    with pytest.raises(ModelError, match=r"component 0 collapsed onto a single point.*increase reg_covar"):
        em.fit(start, x, max_iter=20, check_monotone=False)
    # the ridge scikit-learn uses by default keeps it a density, and EM goes on
    ridged = GaussianMixture([0.5, 0.5], [[0.0], [5.0]], cov, covariance_type, reg_covar=1e-6)
    assert np.isfinite(em.fit(ridged, x, max_iter=20).log_evidence)


# --------------------------------------------------------------------------- the zoo's EM entry
def test_bayesnet_em_does_not_report_its_training_likelihood_as_log_evidence():
    # EM's log-likelihood of 1,000 sampled rows is not log p(evidence): compare must not set it
    # in the exact methods' log-evidence column
    from genzoo.registry import RunConfig
    from genzoo.zoo import bayesnet

    problem = bayesnet.ENTRY.problem({"network": "asia"}, seed=0)
    r = bayesnet._bn_em(problem, RunConfig(seed=0, steps=2, progress=False))
    assert r.log_evidence is None and r.log_evidence_kind is None
    assert np.isfinite(r.diagnostics["train_log_likelihood"]) and r.diagnostics["train_log_likelihood"] < 0

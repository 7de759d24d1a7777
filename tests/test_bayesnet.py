"""BayesNet: validation, the program (sampling and scoring), data encoding.

Oracle: asia's joint (2^8 = 256 states) enumerated by brute force in NumPy from the CPTs.
"""

import itertools
import pickle

import jax
import networkx as nx
import numpy as np
import numpyro
import pytest
from numpyro import handlers
from scipy.special import logsumexp

from genzoo.data import bn_network_path
from inference.errors import DataError, EvidenceError, ModelError, UnknownNameError
from pgm.bayesnet import BayesNet


@pytest.fixture(scope="module")
def asia():
    return BayesNet.from_bif(bn_network_path("asia"))


def brute_force_joint(bn):
    """All joint states (S, V) and their probabilities p(x) = prod_v cpt_v[x_pa(v), x_v]."""
    cards = [len(bn.states[v]) for v in bn.variables]
    rows = np.array(list(itertools.product(*map(range, cards))), dtype=np.int64)
    column = {v: rows[:, i] for i, v in enumerate(bn.variables)}
    p = np.ones(len(rows))
    for v in bn.variables:
        p *= bn.cpt(v)[tuple(column[u] for u in (*bn.parents(v), v))]
    return rows, p


def sprinkler_parts():
    states = {"cloudy": ["no", "yes"], "sprinkler": ["off", "on"], "rain": ["no", "yes"],
              "wet": ["no", "yes"]}
    parents = {"sprinkler": ["cloudy"], "rain": ["cloudy"], "wet": ["sprinkler", "rain"]}
    cpts = {"cloudy": [0.5, 0.5], "sprinkler": [[0.5, 0.5], [0.9, 0.1]],
            "rain": [[0.8, 0.2], [0.2, 0.8]],
            "wet": [[[1.0, 0.0], [0.1, 0.9]], [[0.1, 0.9], [0.01, 0.99]]]}
    return states, parents, cpts


# --------------------------------------------------------------------------- structure
def test_structure_accessors(asia):
    assert asia.variables == ("asia", "tub", "smoke", "lung", "bronc", "either", "xray", "dysp")
    assert asia.parents("dysp") == ("bronc", "either")
    assert asia.children("either") == ("xray", "dysp")
    assert asia.states["smoke"] == ("yes", "no")
    assert set(asia.graph.edges()) == {(p, v) for v in asia.variables for p in asia.parents(v)}
    with pytest.raises(nx.NetworkXError):
        asia.graph.add_edge("dysp", "asia")  # frozen
    asia.states["smoke"] = ("changed",)  # a copy: the network is untouched
    assert asia.states["smoke"] == ("yes", "no")
    with pytest.raises(ValueError):
        asia.cpt("smoke")[0] = 0.3  # read-only
    with pytest.raises(UnknownNameError, match="unknown variable 'smok'"):
        asia.parents("smok")
    assert asia.num_parameters == 18


def test_variables_are_sorted_topologically_keeping_the_given_order():
    states, parents, cpts = sprinkler_parts()
    shuffled = {v: states[v] for v in ("wet", "rain", "sprinkler", "cloudy")}
    bn = BayesNet(shuffled, parents, cpts)
    assert bn.variables == ("cloudy", "rain", "sprinkler", "wet")


def test_from_spec_equals_constructor():
    states, parents, cpts = sprinkler_parts()
    spec = {v: {"states": states[v], "parents": parents.get(v, []), "cpt": cpts[v]} for v in states}
    a, b = BayesNet.from_spec(spec), BayesNet(states, parents, cpts)
    for v in a.variables:
        np.testing.assert_array_equal(a.cpt(v), b.cpt(v))
    with pytest.raises(ModelError, match="spec of 'rain' has no 'cpt'"):
        BayesNet.from_spec({**spec, "rain": {"states": ["no", "yes"], "parents": ["cloudy"]}})


def test_factor_graph_is_the_log_cpts_and_cached(asia):
    graph = asia.factor_graph()
    assert graph is asia.factor_graph()
    assert graph.directed and graph.variables == asia.variables
    for var, factor in zip(asia.variables, graph.factors):
        assert factor.scope == (*asia.parents(var), var)
        with np.errstate(divide="ignore"):
            np.testing.assert_array_equal(factor.log_table, np.log(asia.cpt(var)))


def test_with_cpts_shares_structure_and_validates(asia):
    new = asia.with_cpts({"smoke": [0.2, 0.8]})
    np.testing.assert_array_equal(new.cpt("smoke"), [0.2, 0.8])
    np.testing.assert_array_equal(asia.cpt("smoke"), [0.5, 0.5])
    np.testing.assert_array_equal(new.cpt("dysp"), asia.cpt("dysp"))
    assert new.variables == asia.variables and new.name == asia.name
    with pytest.raises(ModelError, match=r"'smoke' .*\(no parents\) sums to 1\.1"):
        asia.with_cpts({"smoke": [0.3, 0.8]})
    with pytest.raises(ModelError, match="'smok'"):
        asia.with_cpts({"smok": [0.5, 0.5]})


def test_pickles(asia):
    back = pickle.loads(pickle.dumps(asia))
    assert back.variables == asia.variables
    np.testing.assert_array_equal(back.cpt("dysp"), asia.cpt("dysp"))


# --------------------------------------------------------------------------- validation
def _with(**changes):
    states, parents, cpts = sprinkler_parts()
    for key, value in changes.items():
        target, var = key.split("__")
        {"states": states, "parents": parents, "cpts": cpts}[target][var] = value
    return states, parents, cpts


@pytest.mark.parametrize(
    "parts, words",
    [
        (_with(cpts__rain=[[0.8, 0.2], [0.3, 0.8]]), ["'rain'", "(cloudy=yes)", "sums to 1.1"]),
        (_with(cpts__wet=[[[1.0, 0.0], [0.1, 0.9]], [[0.1, 0.9], [0.5, 0.4]]]),
         ["'wet'", "(sprinkler=on, rain=yes)", "sums to 0.9"]),
        (_with(cpts__rain=[0.8, 0.2]), ["'rain'", "shape (2,)", "expected (2, 2)", "cloudy, rain"]),
        (_with(parents__cloudy=["wet"]), ["cycle", "'cloudy'", "'sprinkler'", "'wet'"]),
        (_with(parents__rain=["rain"]), ["cycle", "'rain' -> 'rain'"]),
        (_with(parents__rain=["clody"]), ["parent 'clody' of 'rain'"]),
        (_with(states__rain=["no", "no"]), ["'rain'", "state 'no' twice"]),
        (_with(cpts__sprinkler=[[1.2, -0.2], [0.9, 0.1]]),
         ["'sprinkler'", "negative", "-0.2", "(cloudy=no)"]),
        (_with(cpts__sprinkler=[[np.nan, 0.5], [0.9, 0.1]]), ["'sprinkler'", "not finite", "(cloudy=no)"]),
        (_with(cpts__sprinkler=[["a", "b"], [0.9, 0.1]]), ["'sprinkler'", "not an array of numbers"]),
        (_with(states__rain=[]), ["'rain' has no states"]),
        (_with(states__rain="ny"), ["states of 'rain'"]),
        (_with(parents__snow=["cloudy"]), ["'snow'", "not a variable"]),
        (_with(cpts__snow=[0.5, 0.5]), ["'snow'", "not a variable"]),
        (_with(parents__wet=["rain", "rain"]), ["'wet'", "parent 'rain' twice"]),
    ],
)
def test_bad_networks_raise_model_errors_naming_the_culprit(parts, words):
    with pytest.raises(ModelError) as info:
        BayesNet(*parts)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_missing_cpt_is_named():
    states, parents, cpts = sprinkler_parts()
    del cpts["rain"]
    with pytest.raises(ModelError, match="no CPT is given for 'rain'"):
        BayesNet(states, parents, cpts)


def test_rows_within_tolerance_are_renormalised_once():
    states, parents, cpts = sprinkler_parts()
    rows = np.array([[0.5, 0.5000004], [0.9, 0.1]])
    bn = BayesNet(states, parents, {**cpts, "sprinkler": rows})
    np.testing.assert_array_equal(bn.cpt("sprinkler")[0], rows[0] / rows[0].sum())
    np.testing.assert_array_equal(bn.cpt("sprinkler")[1], rows[1])  # sums to 1 already: untouched
    again = bn.with_cpts({"sprinkler": bn.cpt("sprinkler")})
    np.testing.assert_array_equal(again.cpt("sprinkler"), bn.cpt("sprinkler"))  # idempotent


# --------------------------------------------------------------------------- scoring and sampling
def _hand_log_prob(bn, rows):
    total = np.zeros(len(rows))
    with np.errstate(divide="ignore"):
        for i, v in enumerate(bn.variables):
            axes = [bn.variables.index(u) for u in (*bn.parents(v), v)]
            total += np.log(bn.cpt(v)[tuple(rows[:, axes].T)])
    return total


def test_log_prob_is_the_sum_of_log_cpt_entries(asia):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 2, size=(300, len(asia.variables)))
    ours = asia.log_prob(rows)
    expected = _hand_log_prob(asia, rows)
    assert np.isneginf(expected).any() and np.isfinite(expected).any()
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(expected))
    # eight float64 terms summed: agreement to a few ulps
    np.testing.assert_allclose(ours, expected, rtol=1e-14, atol=0)
    named = {v: [asia.states[v][k] for k in rows[:5, i]] for i, v in enumerate(asia.variables)}
    np.testing.assert_array_equal(asia.log_prob(named), ours[:5])


def test_log_prob_is_normalised_over_the_joint(asia):
    rows, p = brute_force_joint(asia)
    lp = asia.log_prob(rows)
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-14, atol=0)
    assert abs(logsumexp(lp)) < 1e-14


def test_log_prob_needs_complete_rows(asia):
    with pytest.raises(DataError, match="'tub' is missing in row 1"):
        asia.log_prob({"asia": [0, 1], "tub": [0, None], **{v: [0, 0] for v in asia.variables[2:]}})


def _within_binomial_error(freq, p, n, z=5.0):
    """|freq - p| within z standard errors of a mean of n Bernoulli(p) draws."""
    return np.abs(freq - p) <= z * np.sqrt(p * (1 - p) / n) + 1e-12


def test_ancestral_samples_match_the_exact_joint(asia):
    n = 16384
    draws = asia.sample(jax.random.PRNGKey(0), n)
    assert set(draws) == set(asia.variables)
    assert all(x.shape == (n,) and x.dtype == np.int64 for x in draws.values())
    rows, p = brute_force_joint(asia)
    sampled = np.stack([draws[v] for v in asia.variables], axis=1)
    # no draw has probability zero (either = lung or tub, deterministically)
    assert np.isfinite(_hand_log_prob(asia, sampled)).all()
    for i, v in enumerate(asia.variables):
        marginal = np.array([p[rows[:, i] == k].sum() for k in range(2)])
        freq = np.bincount(draws[v], minlength=2) / n
        assert _within_binomial_error(freq, marginal, n).all(), (v, freq, marginal)
    # the whole joint, state by state
    index = sampled @ (1 << np.arange(len(asia.variables))[::-1])
    freq = np.bincount(index, minlength=len(p)) / n
    assert _within_binomial_error(freq, p, n).all()


def test_sampling_is_reproducible_and_key_driven(asia):
    n = 16384  # the bucket the test above compiled
    a = asia.sample(jax.random.PRNGKey(3), n)
    b = asia.sample(jax.random.PRNGKey(3), n)
    c = asia.sample(jax.random.PRNGKey(4), n)
    assert np.array_equal(asia.sample(3, n)["dysp"], a["dysp"])  # an int seed makes the same key
    assert all(np.array_equal(a[v], b[v]) for v in asia.variables)
    assert not all(np.array_equal(a[v], c[v]) for v in asia.variables)
    with pytest.raises(DataError, match="n must be a positive integer"):
        asia.sample(jax.random.PRNGKey(0), 0)


def test_samples_with_evidence_are_exact_posterior_draws():
    bn = BayesNet(*sprinkler_parts())
    evidence = {"wet": "yes", "sprinkler": 0}
    n = 4000
    draws = bn.sample(jax.random.PRNGKey(1), n, evidence=evidence)
    assert (draws["wet"] == 1).all() and (draws["sprinkler"] == 0).all()
    rows, p = brute_force_joint(bn)
    keep = (rows[:, bn.variables.index("wet")] == 1) & (rows[:, bn.variables.index("sprinkler")] == 0)
    posterior = p * keep / (p * keep).sum()
    for i, v in enumerate(bn.variables):
        exact = np.array([posterior[rows[:, i] == k].sum() for k in range(2)])
        freq = np.bincount(draws[v], minlength=2) / n
        assert _within_binomial_error(freq, exact, n).all(), (v, freq, exact)


# --------------------------------------------------------------------------- the program
def test_program_sites_plate_and_enumeration(asia):
    zeros = {v: np.zeros(5, dtype=np.int64) for v in asia.variables}
    trace = handlers.trace(handlers.substitute(asia.model, data=zeros)).get_trace(n=5)
    sites = [name for name, site in trace.items() if site["type"] == "sample"]
    assert sites == list(asia.variables)  # topological order
    assert trace["data"]["type"] == "plate" and trace["data"]["args"][0] == 5
    for v in asia.variables:
        assert trace[v]["infer"] == {"enumerate": "parallel"}
        assert not trace[v]["is_observed"]
        assert trace[v]["fn"].batch_shape == (5,)


def test_program_scores_complete_data_like_log_prob(asia):
    rows = np.array(np.random.default_rng(1).integers(0, 2, size=(50, 8)))
    rows = rows[np.isfinite(_hand_log_prob(asia, rows))]
    log_joint, trace = numpyro.infer.util.log_density(asia.model, (rows,), {}, {})
    assert all(trace[v]["is_observed"] for v in asia.variables)
    np.testing.assert_allclose(float(log_joint), asia.log_prob(rows).sum(), rtol=1e-13)


def test_program_with_missing_entries_sums_to_the_marginal_likelihood(asia):
    """Missing cells are latent sites (obs_mask). Substituting every completion of each row and
    summing the program's probabilities must give p(observed part), by brute force."""
    data = np.array([[1, -1, 0, -1, 1, 0, 0, 1],
                     [-1, 1, -1, 1, 0, 1, -1, 0],
                     [0, 1, 1, 1, 1, 1, 1, -1]])
    # every completion of every row, as rows of one program run
    expanded, owner, fills = [], [], {v: [] for v in asia.variables}
    for r, row in enumerate(data):
        holes = np.flatnonzero(row < 0)
        for values in itertools.product(range(2), repeat=len(holes)):
            full = row.copy()
            full[holes] = values
            expanded.append(np.where(row < 0, -1, row))
            owner.append(r)
            for i, v in enumerate(asia.variables):
                fills[v].append(full[i])
    expanded, owner = np.array(expanded), np.array(owner)
    latent = {f"{v}_unobserved": np.array(fills[v]) for v in asia.variables
              if (expanded[:, asia.variables.index(v)] < 0).any()}
    trace = handlers.trace(handlers.substitute(asia.model, data=latent)).get_trace(expanded)
    assert set(latent) <= set(trace)
    per_row = sum(np.asarray(site["fn"].log_prob(site["value"])) for site in trace.values()
                  if site["type"] == "sample")
    ours = np.array([logsumexp(per_row[owner == r]) for r in range(len(data))])

    rows, p = brute_force_joint(asia)
    expected = [np.log(p[((rows == row) | (row < 0)).all(axis=1)].sum()) for row in data]
    np.testing.assert_allclose(ours, expected, rtol=1e-13)


# --------------------------------------------------------------------------- data encoding
def test_encode_data_reads_dicts_frames_and_arrays(asia):
    import pandas as pd

    data = {"smoke": ["no", None, "yes", np.nan], "xray": [0, 1, -1, 1], "asia": ["yes", "no", "no", "yes"]}
    codes = asia.encode_data(data)
    assert codes.dtype == np.int64 and codes.shape == (4, 8)
    col = {v: codes[:, i] for i, v in enumerate(asia.variables)}
    np.testing.assert_array_equal(col["smoke"], [1, -1, 0, -1])
    np.testing.assert_array_equal(col["xray"], [0, 1, -1, 1])
    np.testing.assert_array_equal(col["asia"], [0, 1, 1, 0])
    np.testing.assert_array_equal(col["dysp"], [-1, -1, -1, -1])  # absent: missing throughout
    np.testing.assert_array_equal(asia.encode_data(pd.DataFrame(data)), codes)
    mixed = {"smoke": ["no", 0, None, 1.0]}  # names, indices, None and integral floats together
    np.testing.assert_array_equal(asia.encode_data(mixed)[:, 2], [1, 0, -1, 1])

    array = np.full((2, 8), np.nan)
    array[0] = [0, 1, 0, 1, 0, 1, 0, 1]
    array[1, 3] = 1.0
    expected = np.full((2, 8), -1)
    expected[0] = array[0]
    expected[1, 3] = 1
    np.testing.assert_array_equal(asia.encode_data(array), expected)
    np.testing.assert_array_equal(asia.encode_data(expected), expected)
    one = asia.encode_data({"tub": "no", "dysp": 0})  # scalars: one row
    assert one.shape == (1, 8) and one[0, 1] == 1 and one[0, 7] == 0


@pytest.mark.parametrize(
    "data, error, words",
    [
        ({"smoke": ["yes", "maybe"]}, EvidenceError, ["unknown state 'maybe'", "'smoke'"]),
        ({"smoker": [0, 1]}, EvidenceError, ["unknown variable 'smoker'"]),
        ({"smoke": [0, 2]}, EvidenceError, ["state index 2", "'smoke'"]),
        ({"smoke": [0, -3]}, EvidenceError, ["state index -3", "'smoke'"]),
        ({"smoke": [0.5, 1.0]}, DataError, ["0.5", "'smoke'"]),
        ({"smoke": [True, False]}, EvidenceError, ["'smoke'"]),
        ({"smoke": [0, 1], "tub": [0]}, DataError, ["different lengths"]),
        (np.zeros((3, 5)), DataError, ["shape (3, 5)", "(n, 8)"]),
        ({}, DataError, ["no variable"]),
    ],
)
def test_encode_data_errors_name_the_culprit(asia, data, error, words):
    with pytest.raises(error) as info:
        asia.encode_data(data)
    for word in words:
        assert word in str(info.value), str(info.value)

"""``genzoo compare deep``: the long table of the deep zoo (tiny sizes: a few training steps)."""

import dataclasses

import numpy as np
import pytest
import torch

from deep import zoo_table
from deep.densities import get
from genzoo import compare
from genzoo.registry import Problem, RunConfig
from genzoo.zoo import ENTRIES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dataclasses.replace(zoo_table.QUICK, steps=5, hidden=8, n_train=256, n_eval=200, digits_steps=5,
                           digits_hidden=8, digit_samples=6)


@pytest.fixture(scope="module")
def table():
    """RealNVP (exact NLL) and the GAN (no NLL) on 8 Gaussians; MADE on binarised digits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_thread fixture does, for the module's shared run
    entry = ENTRIES["deep"]
    data = zoo_table.make_data(TINY, ("8gaussians", zoo_table.DIGITS_BINARY), seed=0)
    problem = Problem(model=None, data={"data": data, "sizes": TINY})
    rows = compare.run_methods(entry, problem, ["realnvp", "gan", "made"], RunConfig(seed=0, progress=False))
    torch.set_num_threads(threads)
    return data, rows


def test_the_entry_lists_all_fourteen_families_one_method_each():
    entry = ENTRIES["deep"]
    assert [m.name for m in entry.methods] == list(zoo_table.FAMILIES)
    assert len(zoo_table.FAMILIES) == 14
    assert entry.comparable_methods == zoo_table.FAMILIES  # `genzoo compare deep` runs every one
    for family in zoo_table.FAMILIES:  # each measured somewhere, and what it skips is said in a note
        assert zoo_table.datasets_of(family)
        assert set(zoo_table.datasets_of(family)) == set(zoo_table.DATASETS) or family in zoo_table.NOTES


def test_the_long_table_has_every_column_and_labels_the_nll_kinds(table):
    _, rows = table
    text = compare.format_table(rows, "deep: tiny")
    lines = text.splitlines()
    header = lines[1]
    for column in ("method", *zoo_table.COLUMNS):
        assert column in header
    body = {(line.split()[0], line.split()[1]): line for line in lines[3:6]}
    assert set(body) == {("realnvp", "8gaussians"), ("gan", "8gaussians"), ("made", "digits")}
    realnvp, gan, made = (rows[i].table[0] for i in range(3))
    assert (realnvp["NLL kind"], gan["NLL kind"], made["NLL kind"]) == ("exact", None, "exact")
    assert " exact " in body[("realnvp", "8gaussians")] and " exact " not in body[("gan", "8gaussians")]
    assert gan["NLL"] is None and gan["KL"] is None and gan["W2"] > 0  # implicit: distances only
    assert realnvp["modes"] is not None and realnvp["NFE"] == 1.0 and made["NFE"] == 64.0
    # footnotes: why NADE / MADE have no 2-D rows, and what the GAN's table leaves out
    assert zoo_table.NOTES["made"] in text and zoo_table.NOTES["gan"] in text
    # an ordinary table is untouched: no "table" key in its metrics
    plain = dataclasses.replace(rows[0], table=[])
    assert "table" not in plain.metrics() and rows[0].metrics()["table"] == rows[0].table


def test_kl_is_nll_minus_entropy_and_the_nll_is_the_flows_own(table):
    data, rows = table
    row = rows[0].table[0]
    density = get("8gaussians")
    assert row["KL"] == row["NLL"] - density.entropy()  # the same two floats, subtracted once
    flow = rows[0].result.params["8gaussians"]
    with torch.no_grad():
        nll = float(-flow.log_prob(data["8gaussians"]["test"]).double().mean())
    # the same float32 log-densities of the same points, averaged in float64 both times
    assert row["NLL"] == pytest.approx(nll, rel=1e-12)


def test_w2_of_the_truth_resampled_is_small_against_a_shifted_set():
    data = zoo_table.make_data(TINY, ("8gaussians",), seed=1)["8gaussians"]
    test = data["test"]
    delta = torch.tensor([10.0, 0.0])

    def fitted(points):
        return zoo_table.Fitted(lambda n, s: points, None, None, 1, 0.0)

    same, _ = zoo_table.score_2d(fitted(test), data, TINY, seed=0)
    moved, _ = zoo_table.score_2d(fitted(test + delta), data, TINY, seed=0)
    x, y = data["truth"].double().numpy(), test.double().numpy()
    # Upper bound: W2 is a minimum over couplings, so the identity coupling bounds it from above.
    identity = float(np.sqrt(((x - y) ** 2).sum(1).mean()))
    # Lower bound (Jensen): any coupling's mean |x_i - y_pi(i) - d|^2 >= |mean x - mean y - d|^2.
    jensen = float(np.linalg.norm(x.mean(0) - y.mean(0) - delta.double().numpy()))
    assert same["W2"] <= identity + 1e-12 and moved["W2"] >= jensen - 1e-12
    # For 8 Gaussians E|X - Y|^2 = 2 tr Cov = 2 (4 + 0.125) per pair, so identity ~ 4.1, while the mean
    # difference of 200 draws has se 2.03 sqrt(2/200) = 0.2: jensen ~ 10 - 0.2. Hence same < moved / 2.
    assert identity < jensen / 2
    assert same["W2"] < moved["W2"] / 2


def test_sample_sets_have_the_shapes_the_report_draws(table):
    _, rows = table
    for row in rows[:2]:
        sets = row.result.diagnostics["sample_sets"]
        assert set(sets) == {"8gaussians"} and sets["8gaussians"].shape == (TINY.n_eval, 2)
        assert sets["8gaussians"].dtype == np.float64
    digits = rows[2].result.diagnostics["sample_sets"][zoo_table.DIGITS_BINARY]
    assert digits.shape == (TINY.digit_samples, 8, 8) and digits.min() >= 0.0 and digits.max() <= 1.0


def test_a_family_without_the_chosen_datasets_says_so_in_a_note():
    data = zoo_table.make_data(TINY, ("ring",), seed=0)
    result = zoo_table.run_family("nade", data, TINY, seed=0)
    assert result.diagnostics["rows"] == [] and "NADE: not run" in result.diagnostics["notes"][0]


# --------------------------------------------------------------------------- every family on digits
NEW_DIGITS = ("maf", "nsf", "gan", "wgan_gp", "ebm", "ddpm", "score_sde", "flow_matching")
TINY_DIGITS = dataclasses.replace(TINY, T=20, sde_steps=10, langevin_steps=10, ais_chains=20, ais_betas=10,
                                  digits_layers=2, probes=2)


@pytest.fixture(scope="module")
def digits_table():
    """The eight families that had no digits row, a few steps each, on the grey digits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = zoo_table.make_data(TINY_DIGITS, (zoo_table.DIGITS_GREY,), seed=0)
    results = {f: zoo_table.run_family(f, data, TINY_DIGITS, seed=0) for f in NEW_DIGITS}
    torch.set_num_threads(threads)
    return data, results


def test_every_family_has_a_digits_row():
    for family in zoo_table.FAMILIES:
        assert {zoo_table.DIGITS_BINARY, zoo_table.DIGITS_GREY} & set(zoo_table.datasets_of(family))


def test_the_new_digits_rows_have_their_nll_kinds_mmd_modes_and_image_grids(digits_table):
    _, results = digits_table
    kinds = {"maf": "bound", "nsf": "bound", "gan": None, "wgan_gp": None, "ddpm": "bound",
             "score_sde": "ode (Hutchinson)", "flow_matching": "ode (Hutchinson)"}
    ebm_ais = results["ebm"].diagnostics["estimators"][zoo_table.DIGITS_GREY]["ais"]
    kinds["ebm"] = "estimate (AIS)" if ebm_ais["ess"] >= 5 else None  # the ESS gate of deep.zoo_table_digits
    for family, result in results.items():
        (row,) = result.diagnostics["rows"]
        assert row["dataset"] == zoo_table.DIGITS_GREY and row["NLL kind"] == kinds[family], family
        assert (row["NLL"] is None) == (kinds[family] is None)
        assert np.isfinite(row["MMD"]) and row["MMD"] > 0 and 0 <= row["modes"] <= 10  # implicit models too
        images = result.diagnostics["sample_sets"][zoo_table.DIGITS_GREY]
        assert images.shape == (TINY_DIGITS.digit_samples, 8, 8) and images.min() >= 0 and images.max() <= 1
    for family in ("score_sde", "flow_matching"):  # the Hutchinson estimate says its standard error
        assert results[family].diagnostics["estimators"][zoo_table.DIGITS_GREY]["nll_se"] > 0


def test_the_flows_digits_nll_is_their_own_log_prob_bound(digits_table):
    import math

    from deep.data import split
    from deep.flows.digits import dequantize_levels
    from genzoo.data import digits

    _, results = digits_table
    test = split(digits()["images"], seed=0)["test"]  # the table's held-out 20% (same split, same seed)
    k = torch.as_tensor(np.round(test * 16).reshape(-1, 64)).long()
    v = dequantize_levels(k, 17, 1)  # the table's test dequantisation: seed + 1
    for family in ("maf", "nsf"):
        flow = results[family].params[zoo_table.DIGITS_GREY]
        with torch.no_grad():
            nll = float(-flow.log_prob(v).double().mean()) + 64 * math.log(17)
        # the same float32 log-densities averaged in float64 both times: only the sum's order may differ
        assert results[family].diagnostics["rows"][0]["NLL"] == pytest.approx(nll, rel=1e-12)


def test_the_logit_space_change_of_variables_is_the_flows_own():
    from deep import zoo_table_digits as zd
    from deep.flows import RealNVP
    from deep.flows.digits import LogitFlow, dequantize_levels

    inner = RealNVP(64, (8,), 2, seed=0)
    v = dequantize_levels(torch.randint(0, 17, (5, 64), generator=torch.Generator().manual_seed(0)), 17, 1)
    with torch.no_grad():
        ours = zd._from_logit(inner.log_prob)(v)
        theirs = LogitFlow(inner, zd.ALPHA).log_prob(v).double().numpy()
    # float32 sums of 64 log-Jacobian terms of size ~3 taken in two orders: |error| <~ 64 * 3 * 6e-8 ~ 1e-5
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_pixels_and_classes_covered_on_known_inputs():
    from deep import zoo_table_digits as zd
    from deep.flows.digits import dequantize_levels
    from genzoo.data import digits

    raw = digits()
    k = torch.arange(17).repeat(4)[:64][None].repeat(3, 1)  # (3, 64) every grey level
    v = dequantize_levels(k, 17, 0)
    assert np.array_equal(zd.to_pixels(v, "unit"), k.double().numpy() / 16)  # quantised back exactly
    images = raw["images"].reshape(-1, 64)
    assert zd.classes_covered(images, binary=False, seed=0) == 10  # real digits: every class
    one = images[raw["labels"] == 3][:1].repeat(200, 0)
    assert zd.classes_covered(one, binary=False, seed=0) == 1

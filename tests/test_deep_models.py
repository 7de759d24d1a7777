"""CVAE inpainting and its masked likelihood; the DMM on two chorales; music conversion; data and plots."""

import numpy as np
import pytest
import torch

from deep.cvae import CVAE
from deep.dmm import DMM, pad_rolls
from deep.music import LOWEST_KEY, NUM_KEYS, chorale_rolls, piano_roll
from deep.train import train
from inference.errors import DataError
from inference.likelihood import log_weights, seeded


def _binary(n, seed=0):
    return (np.random.default_rng(seed).random((n, 8, 8)) > 0.5).astype(np.float32)


def test_cvae_inpainting_keeps_the_condition_and_scores_only_hidden_pixels():
    x, labels = _binary(6), np.arange(6) % 10
    cvae = CVAE(hidden=(16,))
    train(cvae, {"x": x, "labels": labels}, seed=0, steps=3, batch_size=6, num_threads=1)
    mask = np.zeros((6, 8, 8), bool)
    mask[:, :4] = True
    out = cvae.inpaint(x, mask, seed=1, labels=labels)
    np.testing.assert_array_equal(out[mask], x[mask])
    assert set(np.unique(out[~mask])) <= {0.0, 1.0}
    probs = cvae.inpaint(x, mask, seed=1, mean=True)
    np.testing.assert_array_equal(probs[mask], x[mask])
    assert np.all((probs[~mask] > 0) & (probs[~mask] < 1))
    # the likelihood term of the program is the Bernoulli log-density of the hidden pixels only
    from pyro import poutine

    m = torch.as_tensor(mask.reshape(6, 64), dtype=torch.float32)
    with seeded(0):
        trace = poutine.trace(cvae.model).get_trace(x=x, labels=labels, mask=m)
    trace.compute_log_prob()
    site = trace.nodes["x"]
    logits = site["fn"].base_dist.base_dist.logits
    manual = torch.distributions.Bernoulli(logits=logits).log_prob(torch.as_tensor(x.reshape(6, 64)))
    torch.testing.assert_close(site["log_prob"], (manual * (1 - m)).sum(-1))
    assert cvae.generate(np.array([3, 7]), seed=0).shape == (2, 8, 8)
    with pytest.raises(DataError, match="num_classes"):
        cvae.model(x=x[:1], labels=np.array([10]))


def test_piano_roll_conversion():
    # (midi, onset, end) in quarter notes: a C major chord held two beats, then E alone, a grace note
    notes = [(60, 0.0, 2.0), (64, 0.0, 2.0), (67, 0.0, 1.5), (64, 2.0, 3.0), (62, 2.0, 2.0)]
    roll = piano_roll(notes, quantum=1.0)
    assert roll.shape == (3, NUM_KEYS)
    on = {t: sorted(np.flatnonzero(roll[t]) + LOWEST_KEY) for t in range(3)}
    assert on == {0: [60, 64, 67], 1: [60, 64, 67], 2: [64]}
    assert piano_roll(notes, quantum=0.5).shape == (6, NUM_KEYS)
    assert piano_roll(notes, quantum=0.5)[3, 67 - LOWEST_KEY] == 0  # 67 ends at 1.5


def test_dmm_trains_on_two_chorales(tmp_path):
    data = chorale_rolls(limit=2, cache_dir=tmp_path)
    assert len(data["rolls"]) == 2 and all(r.shape[1] == NUM_KEYS for r in data["rolls"])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [pathlib_name(data)]
    again = chorale_rolls(limit=2, cache_dir=tmp_path)  # from the cache
    for a, b in zip(data["rolls"], again["rolls"]):
        np.testing.assert_array_equal(a, b)
    batch = pad_rolls(data["rolls"], max_length=16)
    dmm = DMM(z_dim=4, transition_dim=8, emission_dim=8, rnn_dim=8)
    before = {k: v.clone() for k, v in dmm.state_dict().items()}
    r = train(dmm, batch, seed=0, steps=3, batch_size=2, learning_rate=1e-2, num_threads=1)
    assert np.all(np.isfinite(r.history)) and len(r.history) == 3
    assert any(not torch.equal(v, dmm.state_dict()[k]) for k, v in before.items())
    assert dmm.sample(seed=0, steps=5, n=2).shape == (2, 5, NUM_KEYS)


def test_chorales_keep_nothing_with_the_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", "off")
    monkeypatch.chdir(tmp_path)  # before the shared cache_root, "off" was taken as a folder name here
    data = chorale_rolls(limit=1)
    assert data["cache"] is None and len(data["rolls"]) == 1 and not list(tmp_path.iterdir())


def pathlib_name(data):
    import pathlib

    return pathlib.Path(data["cache"]).name


def test_dmm_padding_is_masked_out():
    """Steps past a sequence's end add exactly zero to every log-density, and the backward RNN of
    the guide sees a padded sequence exactly as the sequence alone."""
    from pyro import poutine

    from deep.dmm import _reverse

    rolls = [np.eye(NUM_KEYS, dtype=np.uint8)[[40, 44, 47, 40, 52]], np.eye(NUM_KEYS, dtype=np.uint8)[[43, 47]]]
    dmm = DMM(z_dim=3, transition_dim=6, emission_dim=6, rnn_dim=6)
    both, alone = pad_rolls(rolls), pad_rolls(rolls[1:])
    with seeded(0):
        guide = poutine.trace(dmm.guide).get_trace(**both)
        model = poutine.trace(poutine.replay(dmm.model, trace=guide)).get_trace(**both)
    for trace in (guide, model):
        trace.compute_log_prob()
        for t in range(2, 5):
            for name in (f"z_{t + 1}", f"x_{t + 1}"):
                if name in trace.nodes:
                    assert trace.nodes[name]["log_prob"][1].item() == 0.0
                    assert trace.nodes[name]["log_prob"][0].item() != 0.0
    with torch.no_grad():
        h_both = _reverse(dmm.rnn(_reverse(both["x"], both["lengths"]))[0], both["lengths"])[1, :2]
        h_alone = _reverse(dmm.rnn(_reverse(alone["x"], alone["lengths"]))[0], alone["lengths"])[0]
    torch.testing.assert_close(h_both, h_alone)
    with seeded(0):
        assert log_weights(dmm.model, dmm.guide, 3, **both).shape == (3, 2)
    with pytest.raises(DataError, match="0 or 1"):
        pad_rolls([np.full((3, NUM_KEYS), 2)])


def test_mnist_loaders_on_tiny_files(tmp_path):
    from genzoo.data import mnist, write_idx

    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    rows = np.column_stack([[7, 2, 1], images.reshape(3, -1)])
    np.savetxt(tmp_path / "mnist_test.csv", rows, fmt="%d", delimiter=",")
    out = mnist("mnist", "test", folder=tmp_path)
    np.testing.assert_allclose(out["images"], images / 255.0)
    np.testing.assert_array_equal(out["labels"], [7, 2, 1])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images.astype(np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([7, 2, 1], np.uint8))
    fashion = mnist("fashion-mnist", "test", folder=tmp_path, limit=2)
    np.testing.assert_allclose(fashion["images"], images[:2] / 255.0)
    np.testing.assert_array_equal(fashion["labels"], [7, 2])
    with pytest.raises(DataError, match="no such file"):
        mnist("mnist", "train", folder=tmp_path)
    with pytest.raises(DataError, match="unknown"):
        mnist("kmnist", folder=tmp_path)


def test_image_grid_and_pictures(tmp_path):
    from deep.plots import image_grid
    from deep.recipes import fit, save_pictures

    imgs = np.stack([np.full((2, 2), v) for v in (0.1, 0.2, 0.3)])
    grid = image_grid(imgs, nrow=2, pad=1, fill=1.0)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(grid[:2, 3:], 0.2)
    np.testing.assert_array_equal(grid[3:, :2], 0.3)
    np.testing.assert_array_equal(grid[3:, 3:], 1.0)
    x = _binary(20)
    result = fit(x, np.arange(20) % 10, model="vae", seed=0, epochs=1, hidden=(8,))
    paths = save_pictures(result.params, x, tmp_path, seed=0, labels=np.arange(20) % 10, n=4)
    assert set(paths) == {"samples", "reconstructions", "latent_space"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths.values())

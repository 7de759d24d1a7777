"""Online VB for LDA on a corpus on disk: the update's closed-form total mass, and the same answer
whether the rows come from shard files or from memory."""

import jax
import numpy as np
import pytest

from inference.errors import DataError
from inference.shards import ShardedDataset, write_shards
from pgm.topics import LDA
from pgm.topics.lda_vb import online_vb_stream


def _bars(n_docs=60, seed=0):
    # 10 bar topics on a 5 x 5 grid of words (Griffiths and Steyvers 2004), 40 tokens per document
    rng = np.random.default_rng(seed)
    topics = np.zeros((10, 25))
    for i in range(5):
        topics[i, i * 5:(i + 1) * 5] = 0.2
        topics[5 + i, i::5] = 0.2
    theta = rng.dirichlet(np.full(10, 0.5), n_docs)
    return np.stack([rng.multinomial(40, th @ topics) for th in theta]).astype(np.float64)


def test_streamed_lambda_follows_the_closed_form_mass(tmp_path):
    counts = _bars()
    data = write_shards(tmp_path / "corpus", {"counts": counts}, rows_per_shard=16)
    lda, batch, tau0, kappa = LDA(10, 25, alpha=0.5, eta=0.1), 12, 10.0, 0.7
    r = online_vb_stream(jax.random.PRNGKey(0), data, lda, batch_size=batch, passes=2, seed=3,
                         learning_offset=tau0, learning_decay=kappa)
    # The expected counts of a minibatch sum to its tokens (each token's responsibilities sum to
    # one), so the total of lambda obeys total <- (1 - rho) total + rho (K V eta + D / |B| N_B).
    from pgm.topics.lda_vb import _vb_start

    total = float(np.asarray(_vb_start(jax.random.PRNGKey(0), (10, 25))).sum())
    t = 0
    for epoch in range(2):
        for position in range(data.batches_per_epoch(batch)):
            _, b = data.batch(3, epoch, position, batch)
            rho = (tau0 + t) ** (-kappa)
            total = (1 - rho) * total + rho * (10 * 25 * 0.1 + len(counts) / len(b["counts"]) * b["counts"].sum())
            t += 1
    assert r.diagnostics["steps"] == t
    assert r.params["lambda"].sum() == pytest.approx(total, rel=1e-9)  # float64 sums of ~1e4 terms
    np.testing.assert_allclose(r.params["topic_word"].sum(1), 1.0, atol=1e-12)
    # the same rows from memory give the same lambda: the order is a function of (seed, epoch) only
    in_memory = online_vb_stream(jax.random.PRNGKey(0), ShardedDataset({"counts": counts}, block_rows=16), lda,
                                 batch_size=batch, passes=2, seed=3, learning_offset=tau0, learning_decay=kappa)
    np.testing.assert_allclose(in_memory.params["lambda"], r.params["lambda"], rtol=1e-12)


def test_stream_bad_input(tmp_path):
    counts = _bars(8)
    data = write_shards(tmp_path / "c", {"counts": counts}, rows_per_shard=4)
    with pytest.raises(DataError, match="ShardedDataset"):
        online_vb_stream(0, {"counts": counts}, LDA(10, 25), batch_size=4)
    with pytest.raises(DataError, match="25 columns"):
        online_vb_stream(0, data, LDA(10, 30), batch_size=4)
    with pytest.raises(DataError, match="passes"):
        online_vb_stream(0, data, LDA(10, 25), batch_size=4, passes=0)

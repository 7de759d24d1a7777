"""Sharded data: every row once per epoch, the documented permutation, bounded memory, the one loop."""

import tracemalloc

import numpy as np
import pytest
import torch

from inference.errors import DataError
from inference.shards import ShardedDataset, write_shards
from inference.train import LossStep, fit


def _data(n=103, d=3):
    x = np.arange(n * d, dtype=np.float64).reshape(n, d)  # row i starts with 3 i: a row names itself
    y = np.arange(n, dtype=np.int64)
    return {"x": x, "y": y}


@pytest.mark.parametrize("batch_size", [1, 7, 10, 103])
def test_an_epoch_visits_every_row_once_with_its_own_values(tmp_path, batch_size):
    data = _data()
    shards = write_shards(tmp_path, data, rows_per_shard=10)  # 11 shards, the last of 3 rows
    assert shards.n == 103 and shards.num_blocks == 11
    for epoch in range(2):
        rows, xs, ys = [], [], []
        for position in range(shards.batches_per_epoch(batch_size)):
            r, b = shards.batch(seed=5, epoch=epoch, position=position, batch_size=batch_size)
            assert len(r) == (batch_size if position < shards.batches_per_epoch(batch_size) - 1
                              else 103 - batch_size * position)
            rows.append(r), xs.append(b["x"]), ys.append(b["y"])
        rows = np.concatenate(rows)
        # oracle: the arrays in memory, indexed by the rows the batches say they hold
        assert sorted(rows.tolist()) == list(range(103))
        np.testing.assert_array_equal(np.concatenate(xs), data["x"][rows])
        np.testing.assert_array_equal(np.concatenate(ys), data["y"][rows])


def test_the_order_is_the_documented_two_level_permutation(tmp_path):
    shards = write_shards(tmp_path, _data(), rows_per_shard=10)
    seed, epoch = 11, 3
    # oracle: steps 1-3 of the module docstring written out with NumPy's generators
    order = np.random.default_rng([seed, epoch]).permutation(11)
    sizes = [10] * 10 + [3]
    expected = np.concatenate([10 * b + np.random.default_rng([seed, epoch, b]).permutation(sizes[b]) for b in order])
    got = np.concatenate([shards.batch(seed, epoch, p, 16)[0] for p in range(shards.batches_per_epoch(16))])
    np.testing.assert_array_equal(got, expected)
    # a pure function of (seed, epoch): a fresh reader gives the same rows; another epoch others
    again = ShardedDataset(tmp_path).batch(seed, epoch, 2, 16)[0]
    np.testing.assert_array_equal(again, expected[32:48])
    assert not np.array_equal(shards.batch(seed, epoch + 1, 0, 103)[0], expected)
    # iter_blocks walks the same order a block at a time
    np.testing.assert_array_equal(np.concatenate([r for r, _ in shards.iter_blocks(seed, epoch)]), expected)


def test_memory_mapped_file_array_and_dict_sources_read_the_same_rows(tmp_path):
    data = _data(n=50)
    np.save(tmp_path / "x.npy", data["x"])
    np.save(tmp_path / "y.npy", data["y"])
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    for source in (tmp_path / "x.npy", mapped, {"x": tmp_path / "x.npy", "y": data["y"]}):
        shards = ShardedDataset(source, block_rows=8)
        assert shards.num_blocks == 7  # ceil(50 / 8)
        np.testing.assert_array_equal(shards.to_arrays()["x"], data["x"])
        rows, batch = shards.batch(seed=0, epoch=0, position=1, batch_size=20)
        np.testing.assert_array_equal(batch["x"], data["x"][rows])


def test_chunks_written_one_at_a_time_are_one_dataset(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [{"x": rng.normal(size=(k, 2))} for k in (5, 1, 9)]
    shards = write_shards(tmp_path, iter(chunks))
    np.testing.assert_array_equal(shards.to_arrays()["x"], np.concatenate([c["x"] for c in chunks]))


def test_an_epoch_holds_at_most_a_few_blocks_in_memory(tmp_path):
    # 40 shards of 256 x 64 float64 (128 KiB each, 5 MiB in all)
    write_shards(tmp_path, ({"x": np.full((256, 64), float(i))} for i in range(40)))
    shards = ShardedDataset(tmp_path)
    block = 256 * 64 * 8
    tracemalloc.start()
    try:
        for position in range(shards.batches_per_epoch(100)):
            shards.batch(seed=0, epoch=0, position=position, batch_size=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the cache keeps the block before and the current one, a third is read and permuted (x2) while
    # the batch is cut: 6 blocks is the bound; reading all 40 would peak at >= 40 blocks
    assert peak < 6 * block, peak / block


def test_bad_shards_and_arguments_are_named(tmp_path):
    with pytest.raises(DataError, match="no shards"):
        ShardedDataset(tmp_path)
    write_shards(tmp_path / "a", {"x": np.zeros((6, 2)), "y": np.zeros(6)}, rows_per_shard=2)
    (tmp_path / "a" / "x-00001.npy").unlink()
    with pytest.raises(DataError, match="lacks shard x-00001.npy"):
        ShardedDataset(tmp_path / "a")
    np.save(tmp_path / "a" / "x-00001.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="same rows shard by shard"):
        ShardedDataset(tmp_path / "a")
    np.save(tmp_path / "a" / "x-00001.npy", np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(DataError, match="shard 1 has dtype float32"):
        ShardedDataset(tmp_path / "a")
    with pytest.raises(DataError, match="holds shards already"):
        write_shards(tmp_path / "a", {"x": np.zeros((2, 2))}, rows_per_shard=1)
    good = write_shards(tmp_path / "b", {"x": np.zeros((6, 2))}, rows_per_shard=4)
    with pytest.raises(DataError, match="position must be in 0..1"):
        good.batch(0, 0, 2, 3)
    with pytest.raises(DataError, match="batch_size"):
        good.batch(0, 0, 0, 0)
    with pytest.raises(DataError, match="share their leading"):
        ShardedDataset({"x": np.zeros((3, 1)), "y": np.zeros(4)})


# --------------------------------------------------------------------------- the one training loop
class _Mean(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(3))


def _loss(module, batch, generator):
    return ((batch["x"] - module.mu) ** 2).sum(1).mean()


def test_fit_on_shards_takes_the_batches_the_dataset_gives(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=(57, 3))
    shards = write_shards(tmp_path / "s", {"x": x}, rows_per_shard=8)
    torch.manual_seed(0)
    step = LossStep(_Mean(), _loss, lr=0.05, optimizer="sgd")
    result = fit(step, shards, seed=4, epochs=3, batch_size=10)
    # oracle 1: plain SGD written out over the same minibatches, float32 like the loop
    mu = torch.zeros(3)
    for t in range(3 * 6):
        _, b = shards.batch(4, t // 6, t % 6, 10)
        xb = torch.as_tensor(b["x"], dtype=torch.float32)
        mu = mu - 0.05 * 2 * (mu - xb).mean(0)  # gradient of mean ||x - mu||^2
    torch.testing.assert_close(result.params.mu.detach(), mu, rtol=0, atol=1e-6)  # float32 op-order rounding
    # oracle 2: with full batches the loss' minimiser is the sample mean; 200 steps of SGD at
    # lr 0.05 shrink the distance to it by (1 - 0.1)^200 ~ 7e-10
    step = LossStep(_Mean(), _loss, lr=0.05, optimizer="sgd")
    full = fit(step, shards, seed=4, steps=200, batch_size=57)
    np.testing.assert_allclose(full.params.mu.detach().numpy(), x.mean(0), atol=1e-5)  # float32 data


def test_fit_on_shards_resumes_bit_for_bit_and_names_bad_rows(tmp_path):
    x = np.random.default_rng(2).normal(size=(40, 3))
    shards = write_shards(tmp_path / "s", {"x": x}, rows_per_shard=7)

    def run(steps, checkpoint=None):
        torch.manual_seed(0)
        step = LossStep(_Mean(), _loss, lr=0.01)
        return fit(step, shards, seed=9, steps=steps, batch_size=6, checkpoint=checkpoint)

    straight = run(17)
    ckpt = tmp_path / "c.ckpt"
    run(9, ckpt)  # stops mid-epoch (7 batches per epoch)
    resumed = run(17, ckpt)
    assert resumed.diagnostics["resumed_from"] == 9
    assert torch.equal(resumed.params.mu, straight.params.mu)
    np.testing.assert_array_equal(resumed.history, straight.history)

    bad = x.copy()
    bad[23, 1] = np.nan
    shards = write_shards(tmp_path / "bad", {"x": bad}, rows_per_shard=7)
    with pytest.raises(DataError, match=r"rows \[23\]"):
        fit(LossStep(_Mean(), _loss, lr=0.01), shards, seed=0, epochs=1, batch_size=6)

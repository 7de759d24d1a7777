"""Our RealNVP and MAF against zuko's, weight for weight (the peer as the oracle).

``benchmarks/flows.py``'s ``same_start`` copies zuko's initial weights into our flow (ours reads the
coordinates swapped, because the two stacks start their alternation of masks / orderings at opposite
ends; see its docstring). If the two implement the same flow, the log-densities then agree to float
rounding, and so do short training runs on the same minibatches.
"""

import importlib.util
import pathlib

import pytest
import torch

pytest.importorskip("zuko")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("flows_benchmark", ROOT / "benchmarks" / "flows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["realnvp", "maf"])
def test_same_weights_same_density_and_same_training(kind):
    bench = _bench()
    ours, peer = bench.same_start(kind, 3, hidden=16, layers=4)
    x = 3 * torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    # float32: each log-density is a sum of ~10 terms of size <~ 10, each rounded to a relative
    # 6e-8, so the two agree to ~1e-5 absolute if they compute the same function
    torch.testing.assert_close(ours.log_prob(x.flip(-1)), peer().log_prob(x), rtol=0, atol=1e-5)

    batches = list((3 * torch.randn(20 * 64, 2, generator=torch.Generator().manual_seed(1))).split(64))
    bench.train_same(ours, bench.nll_ours, [b.flip(-1) for b in batches], 20, 1e-3)
    bench.train_same(peer, bench.nll_zuko, batches, 20, 1e-3)
    with torch.no_grad():
        # Adam divides each gradient by its running scale, so a rounding-level difference in a
        # gradient moves a weight by at most lr x that relative difference per step: after 20 steps
        # of lr 1e-3 the weights, and so the log-densities, still agree to well under 1e-4
        torch.testing.assert_close(ours.log_prob(x.flip(-1)), peer().log_prob(x), rtol=0, atol=1e-4)
        # and training moved them: the two are not both still at their start
        assert not torch.allclose(peer().log_prob(x), bench.same_start(kind, 3, 16, 4)[1]().log_prob(x), atol=1e-3)

"""The one training loop with steps that are not ELBOs: resume after SIGKILL, guards, bad input."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from inference.errors import CheckpointError, DataError, TrainingError
from inference.train import LossStep, TrainStep, checkpoint_state, fit, load_checkpoint

HERE = pathlib.Path(__file__).resolve().parent.parent

# A two-network step with its own randomness: a denoiser and a critic updated alternately, each
# with its own optimiser (the shape of a GAN's or a score model's step, not an ELBO).
STEP_SOURCE = textwrap.dedent(
    """
    import torch
    from inference.train import TrainStep

    class TwoNetStep(TrainStep):
        name = "denoise"

        def __init__(self, seed):
            with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's random state untouched
                torch.manual_seed(seed)
                self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
                self.critic = torch.nn.Linear(3, 1)
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
            self.opt_c = torch.optim.SGD(self.critic.parameters(), lr=1e-2, momentum=0.9)

        def modules(self):
            return {"net": self.net, "critic": self.critic}

        def optimizers(self):
            return {"net": self.opt, "critic": self.opt_c}

        def config(self):
            return {"lr": 1e-2}

        def __call__(self, batch, generator):
            x = batch["x"]
            noise = 0.3 * torch.randn(x.shape, generator=generator)  # (B, 3)
            critic = ((self.critic(x) - self.critic(x + noise)) ** 2).mean()
            self.opt_c.zero_grad(); critic.backward(); self.opt_c.step()
            loss = ((self.net(x + noise) - x) ** 2).sum(-1).mean()
            self.opt.zero_grad(); loss.backward(); self.opt.step()
            return {"loss": loss.detach(), "critic": critic.detach()}
    """
)


_MODULE_DIR = pathlib.Path(__import__("tempfile").mkdtemp(prefix="genzoo-step-"))
(_MODULE_DIR / "twonet_step.py").write_text(STEP_SOURCE)


def _two_net_step(seed=0):
    # one importable module, so that this process and the child see the same class name
    if str(_MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(_MODULE_DIR))
    from twonet_step import TwoNetStep

    return TwoNetStep(seed)


def _data(n=40):
    return {"x": torch.as_tensor(np.random.default_rng(1).normal(size=(n, 3)), dtype=torch.float32)}


def test_custom_step_resumes_bit_for_bit_after_sigkill(tmp_path):
    ckpt, every, steps = tmp_path / "run.ckpt", 4, 20
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import time, numpy as np, torch
        from inference.train import fit
        from twonet_step import TwoNetStep
        torch.set_num_threads(1)
        x = torch.as_tensor(np.random.default_rng(1).normal(size=(40, 3)), dtype=torch.float32)

        def hold(step, losses):  # after the checkpoint of step {2 * every}: wait to be killed
            if step == {2 * every + 1}:
                time.sleep(600)

        fit(TwoNetStep(0), {{"x": x}}, seed=7, steps={steps}, batch_size=8, checkpoint={str(ckpt)!r},
            checkpoint_every={every}, num_threads=1, callback=hold)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(_MODULE_DIR)]))
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        # Wait on the signal the run gives (its checkpoint of step 2 * every), not on a clock.
        while True:
            assert proc.poll() is None, "the training process ended before its checkpoint"
            if ckpt.exists():
                try:
                    if checkpoint_state(ckpt)["step"] == 2 * every:
                        break
                except CheckpointError:
                    pass  # another checkpoint of the run is being renamed into place
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    torch.set_num_threads(1)
    resumed_step = _two_net_step(0)
    resumed = fit(resumed_step, _data(), seed=7, steps=steps, batch_size=8, checkpoint=ckpt,
                  checkpoint_every=every, num_threads=1)
    straight_step = _two_net_step(0)
    straight = fit(straight_step, _data(), seed=7, steps=steps, batch_size=8, num_threads=1)
    assert resumed.diagnostics["resumed_from"] == 2 * every
    for name in ("net", "critic"):
        for a, b in zip(resumed.params[name].state_dict().values(), straight.params[name].state_dict().values()):
            assert torch.equal(a, b)
    np.testing.assert_array_equal(resumed.history, straight.history)
    np.testing.assert_array_equal(resumed.diagnostics["losses"]["critic"], straight.diagnostics["losses"]["critic"])


def test_loss_step_learns_a_closed_form_optimum():
    # Least squares on a linear map: the optimum is the normal-equations solution; Adam with a
    # decaying-to-small loss gets within 1e-3 of it (the data are noise-free, so the optimum is exact).
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 3))
    w = np.array([[1.0], [-2.0], [0.5]])
    data = {"a": torch.as_tensor(a, dtype=torch.float32), "y": torch.as_tensor(a @ w, dtype=torch.float32)}
    lin = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(lin.weight)
    step = LossStep(lin, lambda m, b, g: ((m(b["a"]) - b["y"]) ** 2).mean(), lr=0.05, name="lsq")
    r = fit(step, data, seed=0, steps=600, batch_size=64, device="cpu")
    np.testing.assert_allclose(r.params.weight.detach().numpy().T, w, atol=1e-3)
    assert r.method == "train:lsq" and r.history.shape == (600,) and r.diagnostics["device"] == "cpu"


def test_nan_data_and_nan_loss_stop_with_the_last_good_checkpoint(tmp_path):
    x = _data(40)["x"].clone()
    x[33, 1] = float("nan")
    ckpt = tmp_path / "a.ckpt"
    step = _two_net_step(0)
    with pytest.raises(DataError, match=r"data\['x'\] has NaN .* rows \[33\]"):
        fit(step, {"x": x}, seed=0, steps=20, batch_size=8, checkpoint=ckpt, checkpoint_every=1)
    saved = checkpoint_state(ckpt)
    assert saved["step"] >= 0 and len(saved["history"]["loss"]) == saved["step"]

    calls = []

    def exploding(module, batch, generator):
        calls.append(1)
        out = module(batch["x"]).pow(2).mean()
        return out * (float("inf") if len(calls) == 3 else 1.0)

    lin = torch.nn.Linear(3, 3)
    path = tmp_path / "b.ckpt"
    with pytest.raises(TrainingError, match=r"loss=inf at step 3 .*last good checkpoint .*step 2") as err:
        fit(LossStep(lin, exploding), _data(), seed=0, steps=10, batch_size=8, checkpoint=path, checkpoint_every=1)
    assert err.value.step == 3 and len(err.value.rows) == 8
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    assert load_checkpoint(path, torch.nn.Linear(3, 3))["step"] == 2
    # LossStep skips the update on a non-finite loss: the weights are those after step 2
    fresh = torch.nn.Linear(3, 3)
    load_checkpoint(path, fresh)
    for k in before:
        assert torch.equal(fresh.state_dict()[k], before[k])


def test_a_bad_row_stops_the_run_at_the_step_that_draws_it(tmp_path):
    # The data are checked once before the first step; the run must still stop exactly at the step
    # whose minibatch holds the bad row, with every earlier step done and checkpointed. The step is
    # known in advance: fit draws epoch 1's order as randperm(n) from a generator seeded with seed.
    n, batch, bad_row = 40, 8, 33
    x = _data(n)["x"].clone()
    x[bad_row, 0] = float("inf")
    position = int((torch.randperm(n, generator=torch.Generator().manual_seed(5)) == bad_row).nonzero())
    expected_step = position // batch + 1
    ckpt = tmp_path / "c.ckpt"
    with pytest.raises(DataError, match=rf"rows \[{bad_row}\] \(the minibatch of step {expected_step}\)"):
        fit(_two_net_step(0), {"x": x}, seed=5, steps=20, batch_size=batch, checkpoint=ckpt, checkpoint_every=1)
    if expected_step > 1:
        assert checkpoint_state(ckpt)["step"] == expected_step - 1


def test_bad_arguments_are_named(tmp_path):
    lin = torch.nn.Linear(3, 1)
    step = LossStep(lin, lambda m, b, g: m(b["x"]).mean())
    for kwargs, match in [({"steps": 0}, "steps must be a positive integer"),
                          ({"steps": 2, "epochs": 1}, "exactly one of epochs and steps"),
                          ({"steps": 2, "batch_size": 0}, "batch_size must be a positive integer"),
                          ({"steps": 2, "checkpoint_every": -1}, "checkpoint_every"),
                          ({"steps": 2, "seed": -3}, "seed"),
                          ({"steps": 2, "seed": "a"}, "seed")]:
        kwargs = {"seed": 0, **kwargs}
        with pytest.raises(DataError, match=match):
            fit(step, _data(), **kwargs)
    with pytest.raises(DataError, match="leading data axis"):
        fit(step, {"x": torch.zeros(4, 3), "y": torch.zeros(5)}, seed=0, steps=1)
    with pytest.raises(DataError, match="empty"):
        fit(step, torch.zeros(0, 3), seed=0, steps=1)
    for lr in (-1.0, 0.0, float("inf")):
        with pytest.raises(DataError, match="lr must be"):
            LossStep(lin, lambda m, b, g: m(b["x"]).mean(), lr=lr)
    with pytest.raises(DataError, match="unknown optimizer 'rmsprop2'"):
        LossStep(lin, lambda m, b, g: m(b["x"]).mean(), optimizer="rmsprop2")
    # a checkpoint of another step configuration is refused, naming what differs
    path = tmp_path / "c.ckpt"
    fit(LossStep(lin, lambda m, b, g: m(b["x"]).mean(), lr=1e-3), _data(), seed=0, steps=2, checkpoint=path)
    with pytest.raises(CheckpointError, match="step"):
        fit(LossStep(lin, lambda m, b, g: m(b["x"]).mean(), lr=1e-2), _data(), seed=0, steps=4, checkpoint=path)


def test_generator_is_the_only_randomness():
    # Two runs with one seed agree bit for bit, and the caller's global random state is untouched.
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = fit(_two_net_step(0), _data(), seed=3, steps=6, batch_size=8, num_threads=1)
    assert torch.equal(torch.get_rng_state(), before)
    b = fit(_two_net_step(0), _data(), seed=3, steps=6, batch_size=8, num_threads=1)
    np.testing.assert_array_equal(a.history, b.history)
    c = fit(_two_net_step(0), _data(), seed=4, steps=6, batch_size=8, num_threads=1)
    assert not np.array_equal(a.history, c.history)


def test_minibatch_order_is_the_documented_permutations():
    """Data in memory: epoch e reads the e-th randperm(N) of a CPU generator seeded with ``seed``,
    in consecutive minibatches (what benchmarks/diffusion_fm.py relies on to feed a peer the same
    minibatches)."""
    seen = []

    class Recorder(TrainStep):
        name = "record"

        def __init__(self):
            self.w = torch.nn.Parameter(torch.zeros(()))

        def modules(self):
            return {"w": torch.nn.ParameterList([self.w])}

        def optimizers(self):
            return {}

        def config(self):
            return {}

        def __call__(self, batch, generator):
            seen.append(batch["i"].tolist())
            return {"loss": torch.zeros(())}

    fit(Recorder(), {"i": torch.arange(12)}, seed=5, steps=7, batch_size=4, num_threads=1)  # 3 per epoch
    gen = torch.Generator().manual_seed(5)
    orders = [torch.randperm(12, generator=gen) for _ in range(3)]
    expected = [o[k * 4:(k + 1) * 4].tolist() for o in orders for k in range(3)][:7]
    assert seen == expected


class _Unfit(TrainStep):
    def modules(self):
        return {}

    def optimizers(self):
        return {}


def test_a_step_without_modules_is_refused():
    with pytest.raises(DataError, match="modules"):
        fit(_Unfit(), _data(), seed=0, steps=1)

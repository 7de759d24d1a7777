"""The training loop: seed determinism, resume after a kill, checkpoints that never load silently."""

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

from deep.train import load_checkpoint, save_checkpoint, train
from deep.vae import VAE
from inference.errors import CheckpointError, DataError
from inference.likelihood import seeded
from inference.train import checkpoint_state

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data(n=48):
    rng = np.random.default_rng(0)
    return {"x": (rng.random((n, 4, 4)) > 0.5).astype(np.float32)}


def _model(seed=0):
    with seeded(seed):  # initial weights from a seeded generator, not the caller's global state
        return VAE((4, 4), z_dim=2, hidden=(8,))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_caller_random_state_untouched():
    torch.manual_seed(123)
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    before = torch.get_rng_state()
    ra = train(a, _data(), seed=5, steps=12, batch_size=16, num_threads=1)
    rb = train(b, _data(), seed=5, steps=12, batch_size=16, num_threads=1)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(ra.history, rb.history)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    c = _model()
    c.load_state_dict(_state(b))
    assert not np.array_equal(train(c, _data(), seed=6, steps=2, batch_size=16).history, ra.history[:2])


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    steps, every = 60, 5
    init = tmp_path / "init.pt"
    start = _model()
    save_checkpoint(init, start)
    np.save(tmp_path / "x.npy", _data()["x"])
    ckpt = tmp_path / "run.ckpt"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from deep.train import train, load_checkpoint
        from deep.vae import VAE
        model = VAE((4, 4), z_dim=2, hidden=(8,))
        load_checkpoint({str(init)!r}, model)
        x = np.load({str(tmp_path / 'x.npy')!r})

        def hold(step, loss):  # past the checkpoint of step {2 * every}: wait there to be killed
            if step == {2 * every + 1}:
                time.sleep(600)

        train(model, {{"x": x}}, seed=3, steps={steps}, batch_size=16, checkpoint={str(ckpt)!r},
              checkpoint_every={every}, num_threads=1, callback=hold)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    try:
        # Wait on the run's own signal (its checkpoint of step 2 * every, after which it holds one step
        # further: that step is lost), not on a clock. The deadline only guards against a hang.
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None, "the training process ended before writing its checkpoint"
            assert time.time() < deadline, "the training process hung"
            try:
                if ckpt.exists() and checkpoint_state(ckpt)["step"] == 2 * every:
                    break
            except CheckpointError:
                pass  # a newer checkpoint is being renamed into place
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt, _model())["step"]
    assert 0 < killed_at < steps

    resumed = _model()
    load_checkpoint(init, resumed)
    r = train(resumed, _data(), seed=3, steps=steps, batch_size=16, checkpoint=ckpt, checkpoint_every=every,
              num_threads=1)
    assert r.diagnostics["resumed_from"] == killed_at

    straight = _model()
    load_checkpoint(init, straight)
    s = train(straight, _data(), seed=3, steps=steps, batch_size=16, num_threads=1)
    np.testing.assert_array_equal(r.history, s.history)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_checkpoint_errors(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "a.ckpt", model, state={"step": 3})
    assert load_checkpoint(path, _model())["step"] == 3
    blob = bytearray(path.read_bytes())
    # one flipped byte in the payload: the SHA-256 check refuses it
    blob[-40] ^= 0xFF
    (tmp_path / "flipped.ckpt").write_bytes(bytes(blob))
    target = _model()
    kept = _state(target)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "flipped.ckpt", target)
    assert all(torch.equal(v, kept[k]) for k, v in target.state_dict().items())
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.ckpt", _model())
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="magic"):
        load_checkpoint(tmp_path / "junk.ckpt", _model())
    with pytest.raises(CheckpointError, match="z_dim"):
        load_checkpoint(path, VAE((4, 4), z_dim=3, hidden=(8,)))
    from deep.sbn import SigmoidBeliefNet

    with pytest.raises(CheckpointError, match="SigmoidBeliefNet"):
        load_checkpoint(path, SigmoidBeliefNet(x_dim=16, layers=(2,)))
    # a run's checkpoint refuses other run settings
    run = tmp_path / "run.ckpt"
    train(_model(), _data(), seed=0, steps=3, batch_size=16, checkpoint=run)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(_model(), _data(), seed=0, steps=6, batch_size=8, checkpoint=run)


def test_bad_arguments():
    with pytest.raises(DataError, match="exactly one"):
        train(_model(), _data(), seed=0)
    with pytest.raises(DataError, match="objective"):
        train(_model(), _data(), seed=0, steps=1, objective="nope")
    with pytest.raises(DataError, match="leading data axis"):
        train(_model(), {"x": _data()["x"], "y": np.zeros(3)}, seed=0, steps=1)


@pytest.mark.parametrize("objective, particles, alpha", [("elbo", 1, 0.5), ("elbo", 3, 0.5), ("iwae", 4, 0.5),
                                                        ("renyi", 4, 0.5), ("renyi", 4, 1.0)])
def test_recorded_steps_equal_eager_steps(objective, particles, alpha):
    # 40 points in batches of 16: two batch shapes (16 and 8), so two recorded graphs
    data = {"x": _data(40)["x"]}
    eager, compiled = _model(), _model()
    compiled.load_state_dict(eager.state_dict())
    before = torch.get_rng_state()
    kw = {"objective": objective, "num_particles": particles, "alpha": alpha}
    re = train(eager, data, seed=4, steps=9, batch_size=16, num_threads=1, **kw)
    rc = train(compiled, data, seed=4, steps=9, batch_size=16, num_threads=1, jit=True, **kw)
    assert torch.equal(torch.get_rng_state(), before)
    # the same estimator on the same draws: equal up to float32 rounding (the losses are float32)
    torch.testing.assert_close(torch.as_tensor(rc.history, dtype=torch.float32),
                               torch.as_tensor(re.history, dtype=torch.float32))
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[k], v, msg=k)


def test_recorded_run_resumes_bit_for_bit(tmp_path):
    init = _state(_model())
    ckpt = tmp_path / "run.ckpt"
    first = _model()
    first.load_state_dict(init)
    train(first, _data(40), seed=3, steps=4, batch_size=16, checkpoint=ckpt, num_threads=1, jit=True)
    resumed = _model()
    resumed.load_state_dict(init)
    r = train(resumed, _data(40), seed=3, steps=10, batch_size=16, checkpoint=ckpt, num_threads=1, jit=True)
    assert r.diagnostics["resumed_from"] == 4
    straight = _model()
    straight.load_state_dict(init)
    s = train(straight, _data(40), seed=3, steps=10, batch_size=16, num_threads=1, jit=True)
    np.testing.assert_array_equal(r.history, s.history)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    # an eager run does not resume a recorded one
    with pytest.raises(CheckpointError, match="jit"):
        train(_model(), _data(40), seed=3, steps=12, batch_size=16, checkpoint=ckpt)


def test_recorded_steps_keep_the_data_checks_and_refuse_what_they_cannot_record():
    from inference.errors import ModelError

    x = _data(600)["x"].copy()
    x[537, 1, 2] = 0.5  # not in the first batch: a recorded step would not see it, the check up front does
    with pytest.raises(DataError, match="image 25 pixel 6 .* from data point 512"):
        train(_model(), {"x": x}, seed=0, steps=1, batch_size=16, jit=True)
    x[537, 1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        train(_model(), {"x": x}, seed=0, steps=1, batch_size=16, jit=True)
    for objective in ("iwae_dreg", lambda model, batch: torch.zeros(())):
        with pytest.raises(DataError, match="jit=True records"):
            train(_model(), _data(), seed=0, steps=1, objective=objective, jit=True)

    class Unregistered(VAE):
        def model(self, x=None, n=None):  # the decoder's weights used without pyro.module
            import pyro
            import pyro.distributions as dist

            x = self.check(x)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], self.z_dim), 1.0).to_event(1))
                pyro.sample("x", self.decoder.distribution(z), obs=x)

    with pytest.raises(ModelError, match="decoder"):
        train(Unregistered((4, 4), z_dim=2, hidden=(8,)), _data(), seed=0, steps=1, jit=True)
    # the same model trains eagerly (its decoder's gradients reach the weights without the store)
    train(Unregistered((4, 4), z_dim=2, hidden=(8,)), _data(), seed=0, steps=1)

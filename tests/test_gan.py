"""The GAN as a Pyro program and its alternating step through the one training loop."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from deep.densities import get
from deep.gan import GAN
from deep.gan_losses import make_loss
from deep.gan_steps import GANStep
from inference.errors import CheckpointError, DataError, UnknownNameError
from inference.train import adam, checkpoint_state, fit


pytestmark = pytest.mark.usefixtures("one_thread")


def _gan(**kw):
    torch.manual_seed(0)  # initial weights only
    return GAN(2, z_dim=2, hidden=(16,), **kw)


def test_program_sites_and_conditioning():
    gan = _gan(n_classes=3)
    y = torch.tensor([0, 2, 1, 1])
    trace = poutine.trace(gan.model).get_trace(4, y)
    assert trace.nodes["z"]["type"] == "sample" and trace.nodes["z"]["value"].shape == (4, 2)
    assert trace.nodes["y"]["is_observed"] and torch.equal(trace.nodes["y"]["value"], y)
    # x is the deterministic image of the drawn code: the program IS the generator.
    z = trace.nodes["z"]["value"]
    assert torch.allclose(trace.nodes["x"]["value"], gan.generator(z, y))
    # conditioning on z fixes x exactly; the log-density of the trace is that of z and y under the prior
    z0 = torch.zeros(4, 2)
    cond = poutine.trace(pyro.condition(gan.model, data={"z": z0})).get_trace(4, y)
    assert torch.equal(cond.nodes["x"]["value"], gan.generator(z0, y))
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z0).sum() + 4 * np.log(1 / 3)
    assert float(cond.log_prob_sum()) == pytest.approx(float(expected), rel=1e-6)


def test_sample_is_a_function_of_the_seed():
    gan = _gan()
    np.testing.assert_array_equal(gan.sample(3, 10), gan.sample(3, 10))
    assert not np.array_equal(gan.sample(3, 10), gan.sample(4, 10))
    state = torch.get_rng_state()
    gan.sample(5, 10)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    labelled = _gan(n_classes=2).sample(0, 4, y=[0, 1, 1, 0])
    assert labelled.shape == (4, 2)


@pytest.mark.parametrize("name,pack,r1", [("wgan_gp", 2, 0.0), ("js", 1, 0.0), ("gan", 3, 0.0), ("kl", 2, 1.5)])
def test_step_through_the_loop_equals_a_plain_pytorch_loop(name, pack, r1):
    # Oracle: the same updates written out by hand (the screen of the step), with the loop's random
    # streams reproduced: a full batch in the order of fit's permutation (seeded by the seed), and
    # every draw of the step from the generator fit hands it (also seeded by the seed). R1 is
    # written out here too: (r1 / 2) E ||grad_x V(x)||^2 on the packed data.
    data = get("grid").sample(96, 4)
    seed, steps = 5, 3
    ours = _gan(pack=pack)
    fit(GANStep(ours, make_loss(name, pack=pack, r1=r1), lr=1e-3), {"x": data}, seed=seed, steps=steps, batch_size=96)

    plain = _gan(pack=pack)  # the same initial weights
    loss = make_loss(name, pack=pack)
    # the loop's Adam is torch's fused kernel (inference.train.adam): the same kernel here, for bit equality
    opt_g = adam(plain.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = adam(plain.critic.parameters(), lr=1e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    index_gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        real = data[torch.randperm(96, generator=index_gen)]
        for _ in range(loss.critic_steps):
            fake = plain.generator(torch.randn(96, 2, generator=gen)).detach()
            d_loss = loss.critic_loss(plain.critic, real, fake, gen)
            if r1:
                x = real.reshape(96 // pack, 2 * pack).requires_grad_(True)
                (grad,) = torch.autograd.grad(plain.critic(x).sum(), x, create_graph=True)
                d_loss = d_loss + 0.5 * r1 * grad.pow(2).sum(dim=1).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        g_loss = loss.generator_loss(plain.critic, plain.generator(torch.randn(96, 2, generator=gen)))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    for (k, a), b in zip(ours.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), k  # identical arithmetic in identical order: bit for bit


def test_training_moves_the_samples_towards_the_data():
    # Short adversarial runs are noisy; what a few hundred steps must do on 2-D Gaussian data with an
    # affine generator is bring the samples closer: the squared MMD falls to under half its start.
    from inference.evaluate import mmd

    mu, sd = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.0])
    data = mu + sd * torch.randn(4096, 2, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(2)
    gan = GAN(2, z_dim=2, hidden=(), critic_hidden=(32,))
    reference = data[:1000].numpy()
    before = mmd(gan.sample(3, 1000), reference, bandwidth=1.0)
    fit(GANStep(gan, "gan", lr=2e-3), {"x": data}, seed=1, steps=300, batch_size=128)
    after = mmd(gan.sample(3, 1000), reference, bandwidth=1.0)
    assert after < 0.5 * before


def test_packed_step_runs_every_loss_and_records_both_losses():
    data = get("ring").sample(200, 0)
    for name in ("gan", "kl", "reverse_kl", "js", "pearson", "hellinger", "wgan_gp"):
        gan = _gan(pack=2)
        before = {k: p.detach().clone() for k, p in gan.named_parameters()}
        result = fit(GANStep(gan, name, lr=1e-3), {"x": data}, seed=0, steps=3, batch_size=63)  # 63: one row dropped
        losses = result.diagnostics["losses"]
        assert set(losses) == {"loss", "critic_loss"} and np.isfinite(losses["loss"]).all()
        still = [k for k, p in gan.named_parameters() if torch.equal(before[k], p)]
        # Both networks moved; only WGAN-GP's critic output bias has no gradient (it cancels in
        # E_Q[V] - E_P[V] and the penalty reads gradients in x).
        assert still == (["critic.body.2.bias"] if name == "wgan_gp" else [])


def test_resume_is_bit_for_bit(tmp_path):
    data = get("grid").sample(256, 1)
    full = _gan(pack=2)
    fit(GANStep(full, "wgan_gp"), {"x": data}, seed=3, steps=8, batch_size=32)
    ckpt = tmp_path / "gan.ckpt"
    part = _gan(pack=2)
    fit(GANStep(part, "wgan_gp"), {"x": data}, seed=3, steps=4, batch_size=32, checkpoint=ckpt)
    resumed = _gan(pack=2)  # a fresh process: new objects, weights from the checkpoint
    fit(GANStep(resumed, "wgan_gp"), {"x": data}, seed=3, steps=8, batch_size=32, checkpoint=ckpt)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="loss"):  # another objective's checkpoint is refused
        fit(GANStep(_gan(pack=2), make_loss("js", pack=2)), {"x": data}, seed=3, steps=8, batch_size=32,
            checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="r1"):  # so is one trained without the R1 penalty
        fit(GANStep(_gan(pack=2), make_loss("wgan_gp", pack=2, r1=1.0)), {"x": data}, seed=3, steps=8,
            batch_size=32, checkpoint=ckpt)


def test_nan_batch_mid_training_is_a_typed_error_and_keeps_the_checkpoint(tmp_path):
    data = get("ring").sample(64, 2)
    data[40, 0] = float("nan")
    ckpt = tmp_path / "gan.ckpt"
    with pytest.raises(DataError, match=r"rows \[40\].*step \d+") as err:
        fit(GANStep(_gan(), "gan"), {"x": data}, seed=0, steps=40, batch_size=16, checkpoint=ckpt, checkpoint_every=1)
    bad_step = int(str(err.value).rsplit("step ", 1)[1].rstrip(")"))
    assert checkpoint_state(ckpt)["step"] == bad_step - 1  # the last good step's checkpoint is kept


def test_bad_input():
    with pytest.raises(DataError, match=r"shape \(N, 2\)"):
        fit(GANStep(_gan(), "gan"), {"x": torch.zeros(10, 3)}, seed=0, steps=1)
    with pytest.raises(UnknownNameError, match="chi"):
        GANStep(_gan(), "chi")
    with pytest.raises(DataError, match="packs 2"):
        GANStep(_gan(), make_loss("gan", pack=2))
    with pytest.raises(DataError, match="labels"):
        fit(GANStep(_gan(n_classes=3), "gan"), {"x": torch.zeros(10, 2)}, seed=0, steps=1)
    with pytest.raises(DataError, match=r"labels y must be 4 integers in 0..2"):
        _gan(n_classes=3).sample(0, 4, y=[0, 1, 5, 0])
    with pytest.raises(DataError, match="pack"):
        GAN(2, pack=0)
    with pytest.raises(DataError, match="lr"):
        GANStep(_gan(), "gan", lr=0.0)


@pytest.fixture(scope="module")
def digits():
    from deep.gan_steps import digit_classifier, digits_data

    data = digits_data(0)
    return data, digit_classifier(data["train"], data["train_labels"])


def test_classifier_score_of_real_digits_is_the_classifier_accuracy(digits):
    # A perfect conditional generator would return real digits of the asked class: on held-out real
    # digits the score must be scikit-learn's own accuracy of the classifier, and cover every class.
    from deep.gan_steps import classifier_scores

    data, clf = digits
    scores = classifier_scores(clf, data["test"], data["test_labels"])
    assert scores["classifier_accuracy"] == pytest.approx(clf.score(data["test"], data["test_labels"]), abs=1e-12)
    assert scores["classes_covered"] == 10
    # a generator that always draws a "0" covers one class
    zeros = data["test"][data["test_labels"] == 0][:1].repeat(50, 0)
    assert classifier_scores(clf, zeros, np.repeat(np.arange(10), 5))["classes_covered"] == 1
    with pytest.raises(DataError, match="must match"):
        classifier_scores(clf, data["test"][:5], data["test_labels"][:4])


def test_conditional_digits_gan_runs_through_the_loop(digits):
    from deep.gan_steps import conditional_digit_scores, train_conditional_digits

    data, clf = digits
    data = {**data, "train": data["train"][:200], "train_labels": data["train_labels"][:200]}
    result = train_conditional_digits(data, seed=0, steps=2, pack=2, hidden=(32,), batch_size=64)
    scores = conditional_digit_scores(result.params, clf, 1, per_class=5)
    assert 0 <= scores["classifier_accuracy"] <= 1 and 0 <= scores["classes_covered"] <= 10

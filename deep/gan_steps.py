"""The GAN's alternating update as one :class:`~inference.train.TrainStep` for the one training loop.

One call of :class:`GANStep` on a minibatch of data :math:`x_{1:B}` (labels :math:`y_{1:B}` for the
conditional GAN) does, in order:

1. ``critic_steps`` times: draw :math:`z_{1:B} \\sim N(0, I)` from the loop's generator, make
   :math:`\\tilde x = G(z)` (no gradient to :math:`G`), compute the critic's loss, backward, step
   the critic's Adam;
2. draw fresh :math:`z`, compute the generator's loss through the critic, backward, step the
   generator's Adam (the critic's gradients from this pass are cleared before its next step).

The fakes of a conditional GAN take the batch's own labels. Rows beyond a multiple of ``pack``
are left out of the batch (packing needs whole groups). All randomness (codes, WGAN-GP's mixing
weights) comes from the loop's generator, so a run is a function of its seed and resumes bit for bit.

Example:
    >>> from deep.densities import get
    >>> from deep.gan import GAN
    >>> from deep.gan_losses import make_loss
    >>> from inference.train import fit
    >>> gan = GAN(x_dim=2, z_dim=2, hidden=(32,), pack=2)
    >>> step = GANStep(gan, make_loss("gan", pack=2), lr=1e-3)
    >>> result = fit(step, {"x": get("ring").sample(256, generator=0)}, seed=0, steps=5, batch_size=64)
    >>> sorted(result.diagnostics["losses"])
    ['critic_loss', 'loss']
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from deep.gan import GAN
from deep.gan_losses import GANLoss, make_loss
from inference.errors import DataError
from inference.train import TrainStep, adam

__all__ = ["GANStep", "train_gan", "mode_scores", "digits_data", "digit_classifier", "classifier_scores",
           "train_conditional_digits", "conditional_digit_scores"]


class GANStep(TrainStep):
    """Alternating critic / generator updates of ``gan`` under ``loss`` (a :class:`GANLoss` or a name).

    Args:
        gan: the :class:`~deep.gan.GAN` (its ``pack`` must equal the loss's).
        loss: the objective; a name is passed to :func:`~deep.gan_losses.make_loss` with ``gan.pack``.
        lr, betas: Adam's settings for both networks (``lr_critic`` overrides the critic's rate).
    """

    name = "gan"

    def __init__(self, gan: GAN, loss: GANLoss | str = "gan", *, lr: float = 1e-4, lr_critic: float | None = None,
                 betas: Sequence[float] = (0.5, 0.999)):
        if isinstance(loss, str):
            loss = make_loss(loss, pack=gan.pack)
        if loss.pack != gan.pack:
            raise DataError(f"the loss packs {loss.pack} samples but the GAN's critic reads {gan.pack}")
        for name, value in (("lr", lr), ("lr_critic", lr if lr_critic is None else lr_critic)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise DataError(f"{name} must be a positive finite number, got {value!r}")
        self.gan, self.loss = gan, loss
        self.lr, self.lr_critic, self.betas = float(lr), float(lr if lr_critic is None else lr_critic), tuple(betas)
        self.opt_g = adam(gan.generator.parameters(), lr=self.lr, betas=self.betas)
        self.opt_d = adam(gan.critic.parameters(), lr=self.lr_critic, betas=self.betas)

    def modules(self):
        return {"gan": self.gan}

    def optimizers(self):
        return {"generator": self.opt_g, "critic": self.opt_d}

    def config(self):
        return {"loss": self.loss.name, "pack": self.loss.pack, "generator_form": self.loss.generator_form,
                "penalty": self.loss.penalty, "critic_steps": self.loss.critic_steps, "r1": self.loss.r1, "lr": self.lr,
                "lr_critic": self.lr_critic, "betas": list(self.betas)}

    def setup(self, data):
        x = data.get("x")
        if x is None or x.dim() != 2 or x.shape[1] != self.gan.x_dim:
            raise DataError(f"data['x'] must have shape (N, {self.gan.x_dim}), "
                            f"got {None if x is None else tuple(x.shape)}")
        if self.gan.n_classes and "y" not in data:
            raise DataError("a conditional GAN needs the labels as data['y']")

    def __call__(self, batch, generator):
        gan, loss, critic = self.gan, self.loss, self.gan.critic
        keep = batch["x"].shape[0] - batch["x"].shape[0] % loss.pack
        if keep == 0:
            raise DataError(f"a minibatch of {batch['x'].shape[0]} rows holds no whole group of pack={loss.pack}")
        real_x, y = batch["x"][:keep], (batch["y"][:keep] if gan.n_classes else None)  # (B, D), (B,)
        real = critic.embed(real_x, y)  # (B, D + C)

        def codes():
            return torch.randn(keep, gan.z_dim, generator=generator, device=real.device)  # (B, Z)

        # 1. critic step(s): fakes without gradient to G
        for _ in range(loss.critic_steps):
            with torch.no_grad():
                fake = critic.embed(gan.generate(codes(), y), y)  # (B, D + C)
            d_loss = loss.critic_loss(critic, real, fake, generator)
            if not torch.isfinite(d_loss.detach()):
                return {"loss": d_loss.detach(), "critic_loss": d_loss.detach()}
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        # 2. generator step through the critic
        g_loss = loss.generator_loss(critic, critic.embed(gan.generate(codes(), y), y))
        if torch.isfinite(g_loss.detach()):
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
        return {"loss": g_loss.detach(), "critic_loss": d_loss.detach()}


def train_gan(data, *, seed: int, steps: int, loss: str = "gan", pack: int = 1, batch_size: int = 256,
              lr: float = 1e-3, z_dim: int = 2, hidden: Sequence[int] = (128, 128), r1: float = 0.0,
              device="cpu", progress: bool = False, checkpoint=None):
    """Build a :class:`~deep.gan.GAN` for ``data`` (N, D) (initial weights drawn from ``seed``) and
    train it by :class:`GANStep` under ``loss`` packed ``pack``, with the R1 penalty of weight ``r1``
    on the critic (:func:`~deep.gan_losses.make_loss`), through :func:`inference.train.fit`.
    Returns fit's :class:`~inference.result.Result` (``params``: the GAN)."""
    from inference.train import fit, isolated

    x = torch.as_tensor(data, dtype=torch.float32)
    if x.dim() != 2:
        raise DataError(f"data must have shape (N, D), got {tuple(x.shape)}")
    with isolated(seed):  # the initial weights are a function of the seed, the caller's RNG untouched
        gan = GAN(x.shape[1], z_dim, hidden, pack=pack)
    step = GANStep(gan, make_loss(loss, pack=pack, r1=r1), lr=lr)
    return fit(step, {"x": x}, seed=seed, steps=steps, batch_size=batch_size, device=device, progress=progress,
               checkpoint=checkpoint)


def mode_scores(gan: GAN, density, seed, n: int = 2500) -> dict:
    """PacGAN's figures of ``n`` samples of ``gan`` against a mixture of :mod:`deep.densities`:
    modes captured, high-quality fraction (within 3 sd of the nearest mode), reverse KL."""
    from inference.evaluate import mode_coverage

    if density.modes is None:
        raise DataError(f"density {density.name!r} is not a Gaussian mixture: it has no modes to count")
    return mode_coverage(gan.sample(seed, n), density.modes, density.mode_std)


# --------------------------------------------------------------------------- conditional digits
def digits_data(seed: int, test_fraction: float = 0.2) -> dict:
    """scikit-learn's 8 x 8 digits as GAN data: pixels in [0, 1] mapped to [-1, 1], flattened
    (N, 64), labels (N,), split by :func:`deep.data.split` (``seed``) into train and test parts."""
    from deep.data import split
    from genzoo.data import digits

    raw = digits()
    parts = split(raw["images"].reshape(len(raw["images"]), 64) * 2 - 1, raw["labels"],
                  test_fraction=test_fraction, seed=seed)
    return {k: np.asarray(v) for k, v in parts.items()}


def digit_classifier(images, labels):
    """A scikit-learn multinomial logistic regression trained on real digits (the scorer of the
    conditional GAN's samples in place of an Inception network)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000).fit(np.asarray(images), np.asarray(labels))


def classifier_scores(classifier, samples, labels, n_classes: int = 10) -> dict:
    """How recognisable conditional samples are: ``classifier_accuracy``, the fraction classified as
    the label they were drawn for, and ``classes_covered``, the number of classes whose samples are
    classified as their class more often than not."""
    samples, labels = np.asarray(samples), np.asarray(labels)
    if samples.ndim != 2 or len(samples) != len(labels):
        raise DataError(f"samples (n, D) and labels (n,) must match, got {samples.shape} and {labels.shape}")
    hit = classifier.predict(samples) == labels
    covered = sum(int(hit[labels == c].mean() > 0.5) for c in range(n_classes) if (labels == c).any())
    return {"classifier_accuracy": float(hit.mean()), "classes_covered": covered}


def train_conditional_digits(data: dict, *, seed: int, steps: int, loss: str = "gan", pack: int = 1,
                             batch_size: int = 128, lr: float = 2e-4, z_dim: int = 16,
                             hidden: Sequence[int] = (256, 256), progress: bool = False):
    """A conditional GAN on the training digits of :func:`digits_data` (labels one-hot in both networks)."""
    from inference.train import fit, isolated

    with isolated(seed):
        gan = GAN(64, z_dim, hidden, pack=pack, n_classes=10)
    step = GANStep(gan, make_loss(loss, pack=pack), lr=lr)
    train = {"x": torch.as_tensor(data["train"], dtype=torch.float32), "y": torch.as_tensor(data["train_labels"])}
    return fit(step, train, seed=seed, steps=steps, batch_size=batch_size, progress=progress)


def conditional_digit_scores(gan: GAN, classifier, seed, per_class: int = 100) -> dict:
    """:func:`classifier_scores` of ``per_class`` samples of each digit drawn by the conditional GAN."""
    labels = np.repeat(np.arange(10), per_class)
    return classifier_scores(classifier, gan.sample(seed, len(labels), y=labels), labels)

"""Representation: deep generative models as Pyro programs and torch modules (PyTorch).

Latent-variable models (VAE, IWAE, CVAE, the sigmoid belief net, the deep Markov model) are
``nn.Module`` s with a ``model`` (the generative program) and an amortised ``guide``; exact-likelihood
models (NADE, MADE, the flows of :mod:`deep.flows`, the character language models) offer
``log_prob`` and ``sample``; GANs, energy-based models and diffusion / flow matching
(:mod:`deep.diffusion`) bring their own training steps. Every one trains through the one loop
(:mod:`inference.train`); their weights live in their ``state_dict``.

The names below are imported on first use, so that ``import deep`` stays light.
"""

import importlib

_EXPORTS = {
    "VAE": "deep.vae", "IWAE": "deep.vae", "CVAE": "deep.cvae", "SigmoidBeliefNet": "deep.sbn", "DMM": "deep.dmm",
    "NADE": "deep.nade", "MADE": "deep.made", "MADENet": "deep.made", "MaskedLinear": "deep.made",
    "TransformerLM": "deep.transformer", "LSTMLM": "deep.charlm", "UnigramLM": "deep.charlm",
    "BigramLM": "deep.charlm", "generate": "deep.charlm", "CharVocab": "deep.text_data",
    "GAN": "deep.gan", "GANStep": "deep.gan_steps", "EnergyNet": "deep.ebm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deep' has no attribute {name!r}")

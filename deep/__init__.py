"""Representation: deep generative models as Pyro programs (PyTorch).

Each model is an ``nn.Module`` with a ``model`` (the generative program) and an amortised
``guide``; its weights live in its ``state_dict``. Training is SVI (:mod:`deep.train`), evaluation
through :mod:`inference.likelihood`.
"""

from deep.cvae import CVAE
from deep.dmm import DMM
from deep.sbn import SigmoidBeliefNet
from deep.vae import IWAE, VAE
from deep.made import MADE, MADENet, MaskedLinear
from deep.nade import NADE
from deep.charlm import BigramLM, LSTMLM, UnigramLM, generate
from deep.transformer import TransformerLM
from deep.text_data import CharVocab

__all__ = ["VAE", "IWAE", "CVAE", "SigmoidBeliefNet", "DMM", "NADE", "MADE", "MADENet", "MaskedLinear",
           "TransformerLM", "LSTMLM", "UnigramLM", "BigramLM", "CharVocab", "generate"]

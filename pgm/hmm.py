"""Hidden Markov models: a Markov chain of hidden states, each emitting one observation.

.. math::

    z_0 \\sim \\mathrm{Cat}(\\pi), \\qquad z_t \\mid z_{t-1} \\sim \\mathrm{Cat}(A_{z_{t-1}}), \\qquad
    x_t \\mid z_t \\sim p_{\\theta_{z_t}}(x_t),

with emission families

- categorical: :math:`x_t \\mid z_t = k \\sim \\mathrm{Cat}(B_k)` over ``M`` symbols;
- multinomial: ``M`` counts per step, :math:`x_t \\mid z_t = k \\sim \\mathrm{Mult}(n, B_k)`;
- Gaussian: :math:`\\mathcal N(\\mu_k, \\Sigma_k)`, ``covariance_type`` ``"full"``, ``"diag"``,
  ``"spherical"`` (:math:`\\sigma^2_k I`) or ``"tied"`` (one :math:`\\Sigma` for every state);
- Gaussian mixture: :math:`\\sum_m w_{km} \\mathcal N(\\mu_{km}, \\Sigma_{km})`

(the emission classes live in :mod:`pgm.emissions`; this module holds the chain and its program).

Plate diagram of the program (:meth:`HMM.model`); the plate runs over sequences, ``scan`` over time::

    +--------------------------------------------- sequences (N) --+
    |   z[0] ----> z[1] ----> ... ----> z[t] ----> ...             |
    |    |          |                    |                         |
    |    v          v                    v                         |
    |   x[0]       x[1]                 x[t]        (t < lengths[n])|
    +--------------------------------------------------------------+

The hidden site ``"z"`` carries ``infer={"enumerate": "parallel"}``: NumPyro's enumeration (SVI with
``TraceEnum_ELBO``, NUTS) sums it out, which on a chain is the forward algorithm. The same program
simulates (no ``x``) and scores (``x`` given). Exact inference goes through ``inference.chain``
(forward-backward, Viterbi, FFBS) via :meth:`HMM.chain`; Baum-Welch through ``inference.em.fit``.

Observations: categorical ``x`` is int (T,) for one sequence or (N, T) for a batch; multinomial
``x`` is int (T, M) or (N, T, M) counts; Gaussian ``x`` is (T, D) or (N, T, D) (a 1-D array is one
sequence with D = 1). A batch of sequences of different lengths is a padded array with
``lengths``, or a list of arrays. NaN entries of Gaussian
observations are missing: marginalised in the likelihood and imputed in expectation by EM.

References:
    Rabiner (1989). A tutorial on hidden Markov models and selected applications in speech recognition.
    Baum, Petrie, Soules and Weiss (1970). A maximization technique occurring in the statistical
    analysis of probabilistic functions of Markov chains.

Example:
    >>> import jax, numpy as np
    >>> from pgm.hmm import HMM
    >>> from inference import chain, em
    >>> hmm = HMM.categorical([0.5, 0.5], [[0.95, 0.05], [0.1, 0.9]],
    ...                       [[1/6] * 6, [0.1] * 5 + [0.5]])
    >>> data = hmm.sample(jax.random.PRNGKey(0), 300)
    >>> posterior = chain.marginals(hmm, data["x"][0]).marginals["z"]   # (300, 2)
    >>> fitted = em.fit(hmm, data["x"][0], max_iter=20).params
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

from inference.chain import ChainPotentials, batch_expected_counts, run_batch
from inference.errors import DataError, ModelError
from inference.factors import Factor, FactorGraph
from inference.rng import as_key
from pgm.emissions import (CategoricalEmission, GaussianMixtureEmission, GaussianSingleEmission, MultinomialEmission,
                           _dirichlet_log_density, _normalise_counts, _probability_table, _valid_mask)

# families whose parameters are the (K, M) table emission_probs and whose observations are integers
_DISCRETE = ("categorical", "multinomial")


# ----------------------------------------------------------------------------- the model


class HMM:
    """A hidden Markov model: initial distribution, transition matrix and an emission family.

    Build one with :meth:`categorical`, :meth:`multinomial`, :meth:`gaussian` or
    :meth:`gaussian_mixture`.

    Attributes:
        initial_probs: (K,) :math:`\\pi_k = p(z_0 = k)`.
        transition_matrix: (K, K) :math:`A_{ij} = p(z_t = j \\mid z_{t-1} = i)`.
        emission: the emission family (its parameters in ``emission.params()``).
    """

    def __init__(self, initial_probs, transition_matrix, emission, *, name="hmm"):
        self.initial_probs = _probability_table(initial_probs, "initial_probs")
        if self.initial_probs.ndim != 1:
            raise ModelError(f"initial_probs must be a (K,) vector, got shape {self.initial_probs.shape}")
        K = self.initial_probs.shape[0]
        self.transition_matrix = _probability_table(transition_matrix, "transition_matrix", (K, K))
        self.emission = emission
        self.name = name

    # ------------------------------------------------------------------ constructors
    @classmethod
    def categorical(cls, initial_probs, transition_matrix, emission_probs, *, name="hmm"):
        """Categorical emissions: ``emission_probs[k, m]`` = :math:`p(x_t = m \\mid z_t = k)`."""
        K = np.shape(initial_probs)[0]
        return cls(initial_probs, transition_matrix, CategoricalEmission(emission_probs, K), name=name)

    @classmethod
    def multinomial(cls, initial_probs, transition_matrix, emission_probs, n_trials=None, *, name="hmm"):
        """Multinomial emissions (hmmlearn's ``MultinomialHMM``): each step is ``M`` counts summing
        to ``n_trials``, ``emission_probs[k, m]`` the probability of symbol ``m`` in one trial.
        ``n_trials=None`` takes each step's own total (simulation then needs an int).

        Example:
            >>> hmm = HMM.multinomial([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]],
            ...                       [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], n_trials=4)
            >>> x = hmm.sample(0, 5)["x"][0]                  # (5, 3) counts
            >>> x.sum(axis=1).tolist(), round(float(hmm.log_prob(x)), 6) < 0
            ([4, 4, 4, 4, 4], True)
        """
        K = np.shape(initial_probs)[0]
        emission = MultinomialEmission(emission_probs, K, n_trials)
        return cls(initial_probs, transition_matrix, emission, name=name)

    @classmethod
    def gaussian(cls, initial_probs, transition_matrix, means, covariances, covariance_type="full", *, name="hmm"):
        """Gaussian emissions: ``means`` (K, D); ``covariances`` (K, D, D) ("full") or (K, D) ("diag")."""
        K = np.shape(initial_probs)[0]
        emission = GaussianSingleEmission(means, covariances, covariance_type, K)
        return cls(initial_probs, transition_matrix, emission, name=name)

    @classmethod
    def gaussian_mixture(
        cls, initial_probs, transition_matrix, weights, means, covariances, covariance_type="full", *, name="hmm"
    ):
        """Gaussian-mixture emissions: ``weights`` (K, n_mix), ``means`` (K, n_mix, D),
        ``covariances`` (K, n_mix, D, D) ("full") or (K, n_mix, D) ("diag")."""
        K = np.shape(initial_probs)[0]
        emission = GaussianMixtureEmission(weights, means, covariances, covariance_type, K)
        return cls(initial_probs, transition_matrix, emission, name=name)

    # ------------------------------------------------------------------ structure
    @property
    def num_states(self) -> int:
        return self.initial_probs.shape[0]

    @property
    def states(self) -> dict:
        return {"z": tuple(str(k) for k in range(self.num_states))}

    @property
    def params(self) -> dict:
        """The parameters as a pytree of arrays."""
        return {
            "initial_probs": self.initial_probs,
            "transition_matrix": self.transition_matrix,
            **self.emission.params(),
        }

    def _replace(self, initial_probs, transition_matrix, emission):
        return HMM(initial_probs, transition_matrix, emission, name=self.name)

    def __repr__(self):
        return f"HMM({self.emission.family}, K={self.num_states}, name={self.name!r})"

    # ------------------------------------------------------------------ scoring
    def _prepared(self, x, lengths):
        return self.emission.prepare(x, lengths)

    def chain(self, x, lengths=None) -> ChainPotentials:
        """The chain potentials of ``x`` for ``inference.chain`` / ``inference.exact``."""
        xp, lengths, batched = self._prepared(x, lengths)
        with np.errstate(divide="ignore"):
            log_pi, log_a = np.log(self.initial_probs), np.log(self.transition_matrix)
        return ChainPotentials(log_pi, log_a, self.emission.log_likelihoods(xp), lengths, batched)

    def log_prob(self, x, lengths=None):
        """Exact :math:`\\log p(x)` by the forward algorithm: a float for one sequence, (N,) for a batch."""
        p = self.chain(x, lengths)
        log_z = np.asarray(run_batch("log_likelihood", p.log_initial, p.log_transition, p.log_likelihoods, p.lengths))
        return log_z if p.batched else float(log_z[0])

    @property
    def num_free_parameters(self) -> int:
        """Free scalars: :math:`(K-1) + K(K-1)` for the chain plus the emission's (hmmlearn's
        count: categorical and multinomial :math:`K(M-1)`; Gaussian :math:`KD` means and :math:`K`,
        :math:`KD`, :math:`KD(D+1)/2` or :math:`D(D+1)/2` covariance entries for spherical, diag,
        full, tied;
        a Gaussian mixture :math:`K(M-1) + KMD` plus its covariances)."""
        K = self.num_states
        e = self.emission
        n = (K - 1) + K * (K - 1)
        if e.family in _DISCRETE:
            return n + K * (e.probs.shape[1] - 1)
        D = e.dim
        kind = getattr(e, "kind", e.covariance_type)
        per = {"spherical": 1, "diag": D, "full": D * (D + 1) // 2}
        if e.family == "gaussian":
            cov = D * (D + 1) // 2 if kind == "tied" else K * per[kind]
            return n + K * D + cov
        M = e.weights.shape[1]
        return n + K * (M - 1) + K * M * D + K * M * per[kind]

    def _num_steps(self, x, lengths) -> int:
        _, lengths, _ = self._prepared(x, lengths)
        return int(np.sum(lengths))

    def aic(self, x, lengths=None) -> float:
        """Akaike's criterion :math:`-2 \\log p(x) + 2p` (``p``: :attr:`num_free_parameters`), as
        hmmlearn's ``aic``."""
        return float(-2.0 * np.sum(self.log_prob(x, lengths)) + 2.0 * self.num_free_parameters)

    def bic(self, x, lengths=None) -> float:
        """Schwarz's criterion :math:`-2 \\log p(x) + p \\log n`, ``n`` the number of observed time
        steps in all sequences, as hmmlearn's ``bic``."""
        n = self._num_steps(x, lengths)
        return float(-2.0 * np.sum(self.log_prob(x, lengths)) + self.num_free_parameters * np.log(n))

    def log_joint(self, z, x, lengths=None):
        """Complete-data :math:`\\log p(z, x)` (float, or (N,) for a batch)."""
        p = self.chain(x, lengths)
        z = np.asarray(z)
        z = z if p.batched else z[None]
        N, T, K = p.log_likelihoods.shape
        if z.shape != (N, T):
            raise DataError(f"z must have shape {(N, T) if p.batched else (T,)}, got {np.shape(z)}")
        valid = _valid_mask(p.lengths, T)
        bad = np.argwhere(valid & ((z < 0) | (z >= K)))
        if bad.size:
            n, t = (int(i) for i in bad[0])
            raise DataError(f"z[{n}, {t}] = {z[n, t]} is not a state (0..{K - 1})")
        z = np.where(valid, z, 0)
        ll = np.take_along_axis(np.asarray(p.log_likelihoods), z[..., None], -1)[..., 0]
        trans = np.asarray(p.log_transition)[z[:, :-1], z[:, 1:]]
        out = np.asarray(p.log_initial)[z[:, 0]] + np.sum(np.where(valid, ll, 0), 1)
        out = out + np.sum(np.where(valid[:, 1:], trans, 0), 1)
        return out if p.batched else float(out[0])

    # ------------------------------------------------------------------ the program
    def _program(self, params, x=None, T=None, lengths=None):
        # jnp throughout: parameter values may arrive as NumPy arrays (init_to_value, substitute)
        # and are indexed by the traced states inside scan
        params = jax.tree_util.tree_map(jnp.asarray, params)
        initial, transition = params["initial_probs"], params["transition_matrix"]
        emission = _emission_args(self.emission, params)
        K = self.num_states
        if x is None:
            if T is None:
                raise DataError("the HMM program needs observations x or a number of steps T")
            N = 1 if lengths is None else len(lengths)
            xs = None
            valid = jnp.ones((T, N), bool)
        else:
            xp, lens, _ = self._prepared(x, lengths)
            N, T = xp.shape[:2]
            xs = jnp.swapaxes(jnp.asarray(xp), 0, 1)  # (T, N, ...)
            valid = jnp.asarray(_valid_mask(lens, T).T)
        start = jnp.concatenate([transition, initial[None]])  # row K: the start state
        # past a sequence's end the state stays put (a masked enumerated site would count K times)
        stay = jnp.concatenate([jnp.eye(K), initial[None]])

        def step(z_prev, inputs):
            x_t, valid_t = inputs
            with numpyro.plate("sequences", N, dim=-1):
                probs = jnp.where(valid_t[..., None], start[z_prev], stay[z_prev])
                z = numpyro.sample("z", dist.Categorical(probs=probs), infer={"enumerate": "parallel"})
                with numpyro.handlers.mask(mask=valid_t):
                    x_new = self._emit(emission, z, x_t)
            return z, (z, x_new)

        z0 = jnp.full(N, K)
        _, (zs, x_out) = scan(step, z0, (xs, valid), length=T)
        return zs, x_out

    def _emit(self, emission, z, x_t):
        if self.emission.family in _DISCRETE:
            return numpyro.sample("x", self.emission.distribution(emission, z), obs=x_t)
        if x_t is None:
            return numpyro.sample("x", self.emission.distribution(emission, z))
        observed = ~jnp.isnan(x_t)
        present = observed.any(-1)
        filled = jnp.nan_to_num(x_t)
        if self.emission.family == "gaussian" and self.emission.covariance_type == "diag":
            with numpyro.handlers.mask(mask=present):
                return numpyro.sample("x", self.emission.distribution(emission, z, observed), obs=filled)
        with numpyro.handlers.mask(mask=present):
            return numpyro.sample("x", self.emission.distribution(emission, z), obs=filled)

    def model(self, x=None, T=None, lengths=None):
        """The NumPyro program: ``scan`` over time, enumerable site ``"z"``, observation site ``"x"``.

        Args:
            x: observations (see the module docstring), or None to simulate.
            T: number of steps when simulating.
            lengths: (N,) valid lengths of a padded batch; when simulating, ``len(lengths)`` sequences.

        Gaussian observations with NaN are masked: whole missing steps for every covariance type,
        single missing entries for ``"diag"`` (the full-covariance program cannot marginalise part of
        a step; ``inference.chain`` and ``log_prob`` can).
        """
        if x is not None and self.emission.family not in _DISCRETE and self.emission.covariance_type == "full":
            xp, _, _ = self._prepared(x, lengths)
            observed = ~np.isnan(xp)
            if np.any(observed.any(-1) & ~observed.all(-1)):
                raise DataError(
                    "x has partly missing steps, which the full-covariance program cannot mask; "
                    "use hmm.log_prob / inference.chain, or covariance_type='diag'"
                )
        params = jax.tree_util.tree_map(jnp.asarray, self.params)
        return self._program(params, x, T, lengths)

    def bayesian_model(self, x=None, T=None, lengths=None, *, concentration=1.0, mean_scale=10.0):
        """The program with priors on the parameters, for NUTS or SVI over them.

        :math:`\\pi \\sim \\mathrm{Dir}(c)`, rows :math:`A_i \\sim \\mathrm{Dir}(c)`; categorical and
        multinomial rows :math:`B_k \\sim \\mathrm{Dir}(c)`; Gaussian means
        :math:`\\mu_k \\sim \\mathcal N(\\mu_k^{(0)}, s^2 I)` around this model's means and the site ``"variances"`` as the covariance type ties
        them, each :math:`\\mathrm{InvGamma}(2, \\cdot)` with this model's value as its scale:
        :math:`\\sigma^2_{kd}` (K, D) for diag, :math:`\\sigma^2_k` (K,) for spherical
        (:math:`\\Sigma_k = \\sigma^2_k I`), :math:`\\sigma^2_{kd}` (K, D) for full and one
        :math:`\\sigma^2_d` (D,) shared by every state for tied. A full or tied model keeps its
        correlations fixed at this model's and scales them by the sampled variances,
        :math:`\\Sigma_{de} = \\rho_{de} \\sigma_d \\sigma_e`. Mixture weights
        :math:`\\sim \\mathrm{Dir}(c)`.
        """
        return self._program(self._prior(concentration, mean_scale), x, T, lengths)

    def collapsed_model(self, x, lengths=None, *, concentration=1.0, mean_scale=10.0):
        """:meth:`bayesian_model` with the states summed out by the forward algorithm.

        The same priors on the parameters, and :math:`\\log p(x \\mid \\theta) = \\log \\sum_z p(z, x
        \\mid \\theta)` (:func:`inference.chain.run_batch`, in log or scaled space by its rule) as one
        ``numpyro.factor`` site ``"x"``: the posterior over the parameters is the same as the
        enumerated program's, and NUTS or SVI run on the parameters alone, with no enumeration
        machinery to trace (what a Stan user writes for an HMM). Observations as in :meth:`model`,
        without missing (NaN) entries.
        """
        xp, lens, _ = self._prepared(x, lengths)
        float_data = self.emission.family not in _DISCRETE
        if float_data and np.isnan(xp[_valid_mask(lens, xp.shape[1])]).any():
            raise DataError("x has missing (NaN) entries: collapsed_model needs complete steps; use bayesian_model")
        xp = jnp.asarray(np.nan_to_num(xp) if float_data else xp)  # padding past the lengths is ignored
        params = self._prior(concentration, mean_scale)
        K = self.num_states
        states = jnp.arange(K).reshape((K,) + (1,) * 2)
        emission = self.emission.distribution(_emission_args(self.emission, params), states)
        log_lik = jnp.moveaxis(emission.log_prob(xp[None]), 0, -1)  # (N, T, K)
        log_z = run_batch("log_likelihood", jnp.log(params["initial_probs"]),
                          jnp.log(params["transition_matrix"]), log_lik, lens)
        numpyro.factor("x", jnp.sum(log_z))

    def state_graph(self, x) -> FactorGraph:
        """The state posterior :math:`p(z_{0:T-1} \\mid x)` of one sequence as a factor graph, for
        the generic discrete engines (Gibbs, mean field, loopy BP; forward-backward in
        :mod:`inference.chain` is the fast exact answer). Variables ``"z[0]"`` ... ``"z[T-1]"``;
        factors :math:`\\log \\pi + \\log p(x_0 \\mid z_0)` on ``z[0]``,
        :math:`\\log p(x_t \\mid z_t)` on each later ``z[t]`` and :math:`\\log A` on each pair
        ``(z[t-1], z[t])``; the normaliser is :math:`p(x)`.
        """
        p = self.chain(x)
        if p.batched:
            raise DataError(f"state_graph takes one sequence, got a batch of {len(p.lengths)}")
        ll = np.asarray(p.log_likelihoods[0], dtype=np.float64)  # (T, K)
        names = [f"z[{t}]" for t in range(ll.shape[0])]
        unary = ll.copy()
        unary[0] += np.asarray(p.log_initial)
        factors = [Factor((v,), unary[t]) for t, v in enumerate(names)]
        factors += [Factor((a, b), np.asarray(p.log_transition)) for a, b in zip(names, names[1:])]
        return FactorGraph({v: tuple(str(k) for k in range(self.num_states)) for v in names}, factors)

    def _prior(self, concentration, mean_scale):
        """The parameters drawn from the priors of :meth:`bayesian_model` (sample sites)."""
        K = self.num_states
        params = {
            "initial_probs": numpyro.sample("initial_probs", dist.Dirichlet(jnp.full(K, concentration))),
            "transition_matrix": numpyro.sample(
                "transition_matrix", dist.Dirichlet(jnp.full((K, K), concentration)).to_event(1)
            ),
        }
        e = self.emission
        if e.family in _DISCRETE:
            params["emission_probs"] = numpyro.sample(
                "emission_probs", dist.Dirichlet(jnp.full(e.probs.shape, concentration)).to_event(1)
            )
        else:
            means0 = jnp.asarray(e.means)
            cov0 = jnp.asarray(e.covariances)
            var0 = cov0 if e.covariance_type == "diag" else jnp.diagonal(cov0, axis1=-2, axis2=-1)
            # the tying is kept: spherical states sample one variance each (K,), tied ones a single
            # (D,) set of variances shared by every state (both stored expanded, see GaussianEmission)
            kind = getattr(e, "kind", e.covariance_type)
            var0 = {"spherical": var0[..., 0], "tied": var0[0]}.get(kind, var0)
            params["means"] = numpyro.sample("means", dist.Normal(means0, mean_scale).to_event(means0.ndim))
            var = numpyro.sample("variances", dist.InverseGamma(2.0, var0).to_event(var0.ndim))
            if kind == "spherical":
                params["covariances"] = jnp.broadcast_to(var[:, None], cov0.shape)
            elif e.covariance_type == "diag":
                params["covariances"] = var
            else:  # full or tied: the correlations of this model, scaled by the sampled variances
                diag0 = jnp.diagonal(cov0, axis1=-2, axis2=-1)
                corr = cov0 / jnp.sqrt(diag0[..., :, None] * diag0[..., None, :])
                params["covariances"] = corr * jnp.sqrt(var[..., :, None] * var[..., None, :])
            if e.family == "gaussian_mixture":
                params["weights"] = numpyro.sample(
                    "weights", dist.Dirichlet(jnp.full(e.weights.shape, concentration)).to_event(1)
                )
        # a substituted value (an init strategy's) may be a NumPy array, which a traced index (the
        # states, inside a compiled program) cannot select from
        return {k: jnp.asarray(v) for k, v in params.items()}

    def sample(self, key, T, n_sequences=1) -> dict:
        """Simulate ``n_sequences`` sequences of ``T`` steps by running the program without data
        (``key``: a JAX key or an int seed).

        Returns:
            ``{"z": (n_sequences, T) int64, "x": (n_sequences, T) int64, (n_sequences, T, M) int64
            counts or (n_sequences, T, D)}``.
        """
        if not isinstance(T, (int, np.integer)) or T < 1:
            raise DataError(f"T must be a positive integer, got {T!r}")
        if not isinstance(n_sequences, (int, np.integer)) or n_sequences < 1:
            raise DataError(f"n_sequences must be a positive integer, got {n_sequences!r}")
        params = jax.tree_util.tree_map(jnp.asarray, self.params)
        zs, xs = _simulate(self, params, as_key(key), int(T), int(n_sequences))
        x = np.swapaxes(np.asarray(xs), 0, 1)
        x = x.astype(np.int64) if self.emission.family in _DISCRETE else np.array(x, dtype=np.float64)
        return {"z": np.swapaxes(np.asarray(zs), 0, 1).astype(np.int64), "x": x}

    # ------------------------------------------------------------------ EM contract
    @staticmethod
    def _unpack(data):
        if isinstance(data, dict):
            return data["x"], data.get("lengths")
        return data, None

    def expected_stats(self, data):
        """Baum-Welch E-step: expected initial, transition and emission statistics, and :math:`\\log p(x)`.

        ``data``: observations as :meth:`log_prob` takes them, or ``{"x": ..., "lengths": ...}``.
        """
        x, lengths = self._unpack(data)
        xp, lengths, _ = self._prepared(x, lengths)
        with np.errstate(divide="ignore"):
            log_pi, log_a = np.log(self.initial_probs), np.log(self.transition_matrix)
        ll = self.emission.log_likelihoods(xp)
        log_z, gamma, initial, transition = batch_expected_counts(log_pi, log_a, ll, lengths)
        stats = {
            "initial": initial,
            "transition": transition,
            "emission": self.emission.expected_stats(xp, gamma),
        }
        return stats, float(np.sum(np.asarray(log_z)))

    def from_stats(self, stats, pseudo_count=0.0, covariance_prior=0.0, learn=None, mean_weight=0.0,
                   mean_prior=0.0) -> "HMM":
        """Baum-Welch M-step (MAP under the priors of :meth:`log_prior`).

        ``learn``: which parameters to re-estimate, hmmlearn's ``params`` letters (``s`` initial,
        ``t`` transition, ``e`` categorical or multinomial emissions, ``m`` means, ``c`` covariances); the
        others stay as they are (each update is the exact maximiser given the kept ones, so EM
        still never decreases). Default: all. Options of :func:`inference.em.fit` reach here,
        e.g. ``em.fit(hmm, x, learn="tm")``. ``mean_weight`` / ``mean_prior``: a prior on the
        Gaussian means (hmmlearn's ``means_weight`` / ``means_prior``,
        :meth:`pgm.emissions.GaussianEmission.from_stats`).
        """
        if pseudo_count < 0 or covariance_prior < 0:
            raise ModelError("pseudo_count and covariance_prior must be non-negative")
        learn = "stemc" if learn is None else str(learn)
        unknown = set(learn) - set("stemc")
        if unknown:
            raise ModelError(f"learn holds unknown letters {sorted(unknown)}; use s, t, e, m, c (hmmlearn's params)")
        initial = _normalise_counts(stats["initial"], pseudo_count, self.initial_probs) if "s" in learn \
            else self.initial_probs
        transition = _normalise_counts(stats["transition"], pseudo_count, self.transition_matrix) if "t" in learn \
            else self.transition_matrix
        if self.emission.family in _DISCRETE:
            emission = self.emission.from_stats(stats["emission"], pseudo_count=pseudo_count) if "e" in learn \
                else self.emission
        elif self.emission.family == "gaussian":
            emission = self.emission.from_stats(stats["emission"], covariance_prior=covariance_prior, learn=learn,
                                                mean_weight=mean_weight, mean_prior=mean_prior)
        else:
            if set("mc") - set(learn):
                raise ModelError("a Gaussian-mixture emission learns its means and covariances together (learn needs m and c)")
            emission = self.emission.from_stats(
                stats["emission"], pseudo_count=pseudo_count, covariance_prior=covariance_prior
            )
        return self._replace(initial, transition, emission)

    def log_prior(self, pseudo_count=0.0, covariance_prior=0.0, learn=None, mean_weight=0.0, mean_prior=0.0) -> float:
        """:math:`\\log p(\\theta)`: Dirichlet(1 + pseudo_count) on every distribution row and the
        improper :math:`-\\tfrac{\\psi}{2}\\mathrm{tr}\\,\\Sigma^{-1}` on Gaussian covariances (and the mean
        prior's term when ``mean_weight`` > 0)."""
        extra = {"mean_weight": mean_weight, "mean_prior": mean_prior} if self.emission.family == "gaussian" else {}
        return (
            _dirichlet_log_density(self.initial_probs, pseudo_count)
            + _dirichlet_log_density(self.transition_matrix, pseudo_count)
            + self.emission.log_prior(pseudo_count=pseudo_count, covariance_prior=covariance_prior, **extra)
        )

    def data_is_complete(self, data) -> bool:
        return False


def _emission_args(emission, params):
    if emission.family in _DISCRETE:
        return params["emission_probs"]
    if emission.family == "gaussian":
        return params["means"], params["covariances"]
    return params["weights"], params["means"], params["covariances"]


def _simulate(hmm, params, key, T, N):
    def run(params, key):
        with numpyro.handlers.seed(rng_seed=key):
            return hmm._program(params, None, T, jnp.ones(N, jnp.int32))

    return jax.jit(run)(params, key)


def relabelled_draws(samples, reference_emission_probs) -> dict:
    """Draws of a discrete-emission HMM's parameters relabelled to a reference's states (label
    switching: each draw's emission rows are matched to ``reference_emission_probs`` (K, M) by total
    variation, :func:`inference.align.align`, and its states permuted accordingly).

    Args:
        samples: ``{"initial_probs": (S, K), "transition_matrix": (S, K, K), "emission_probs": (S, K, M)}``
            (posterior draws, or a point estimate as ``S = 1``).

    Returns:
        The same three sites, float64, each draw in the reference's state order.
    """
    from inference.align import align

    missing = sorted({"initial_probs", "transition_matrix", "emission_probs"} - set(samples))
    if missing:
        raise DataError(f"samples lack the sites {missing}")
    pi = np.asarray(samples["initial_probs"], dtype=np.float64)  # (S, K)
    a = np.asarray(samples["transition_matrix"], dtype=np.float64)  # (S, K, K)
    b = np.asarray(samples["emission_probs"], dtype=np.float64)  # (S, K, M)
    if b.ndim != 3:
        raise DataError(f"emission_probs must be draws of shape (S, K, M), got {b.shape}")
    s, k, _ = b.shape
    if s == 0:
        raise DataError("samples hold no draws (S = 0)")
    if pi.shape != (s, k) or a.shape != (s, k, k):
        raise DataError(f"samples disagree in shape: initial_probs {pi.shape}, transition_matrix {a.shape}, "
                        f"emission_probs {b.shape}")
    perm, _ = align(b, reference_emission_probs, "tv")  # (S, K)
    rows = np.arange(s)[:, None]
    return {"initial_probs": pi[rows, perm], "transition_matrix": a[rows[:, :, None], perm[:, :, None], perm[:, None, :]],
            "emission_probs": b[rows, perm]}


def averaged_state_marginals(samples, x, reference_emission_probs) -> np.ndarray:
    """State marginals of a categorical HMM averaged over posterior draws of its parameters.

    .. math::
        p(z_t = k \\mid x) = \\int p(z_t = k \\mid x, \\theta)\\, p(\\theta \\mid x)\\, d\\theta
        \\approx \\frac1S \\sum_s p(z_t = \\pi_s(k) \\mid x, \\theta_s),

    each term by forward-backward (:func:`inference.chain.hmm_smoother`, vectorised over draws).
    The posterior is symmetric under relabelling the states, so draw :math:`s` is first relabelled
    by the permutation :math:`\\pi_s` matching its emission rows to ``reference_emission_probs``
    at least total variation (:func:`inference.align.align`); averaging unaligned draws would mix
    the labels (Stephens 2000).

    Args:
        samples: posterior draws ``{"initial_probs": (S, K), "transition_matrix": (S, K, K),
            "emission_probs": (S, K, M)}`` (e.g. ``inference.mcmc.nuts`` on
            :meth:`HMM.bayesian_model`).
        x: int (T,) one observed sequence.
        reference_emission_probs: (K, M) emission rows giving the labelling (a point estimate).

    Returns:
        (T, K) probabilities in the reference's state order.

    Example:
        >>> import numpy as np
        >>> b = np.array([[0.9, 0.1], [0.2, 0.8]])
        >>> draws = {"initial_probs": np.array([[0.5, 0.5]] * 2),
        ...          "transition_matrix": np.array([[[0.9, 0.1], [0.1, 0.9]]] * 2),
        ...          "emission_probs": np.stack([b, b[::-1]])}  # the second draw has its labels swapped
        >>> averaged_state_marginals(draws, np.array([0, 0, 1]), b).shape
        (3, 2)
    """
    aligned = relabelled_draws(samples, reference_emission_probs)
    pi, a, b = aligned["initial_probs"], aligned["transition_matrix"], aligned["emission_probs"]
    m = b.shape[-1]
    x = np.asarray(x)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= m:
        raise DataError(f"x must be one int sequence (T,) of symbols in [0, {m}), got shape {x.shape} dtype {x.dtype}")

    S, total = len(pi), 0.0
    for lo in range(0, S, _DRAW_BLOCK):  # whole blocks: one compiled program for any number of draws
        n = min(_DRAW_BLOCK, S - lo)
        pad = [(0, _DRAW_BLOCK - n)] + [(0, 0)] * 2
        block = [np.pad(np.asarray(v[lo:lo + n], dtype=np.float64), pad[:np.ndim(v)], mode="edge") for v in (pi, a, b)]
        total = total + np.asarray(_smoothed_sum(*block, jnp.asarray(x), jnp.arange(_DRAW_BLOCK) < n))
    return total / S  # (T, K)


_DRAW_BLOCK = 256
"""Draws smoothed per call of :func:`_smoothed_sum` (the last block padded with its last draw,
weighted zero): a first run of ``genzoo compare hmm`` compiled the vectorised smoother anew for
each number of draws its methods return (1, 200, 4,000), half a second each."""


@jax.jit
def _smoothed_sum(pi, a, b, x, keep):
    """:math:`\\sum_s p(z_t = k \\mid x, \\theta_s)` over the draws of a block where ``keep`` is true."""
    from inference.chain import hmm_smoother

    def smooth(pi, a, b):
        log_lik = jnp.log(b)[:, x].T  # (T, K)
        return hmm_smoother(jnp.log(pi), jnp.log(a), log_lik).smoothed_probs  # (T, K)

    gamma = jax.vmap(smooth)(pi, a, b)  # (block, T, K)
    return jnp.sum(jnp.where(keep[:, None, None], gamma, 0.0), axis=0)


__all__ = ["HMM", "CategoricalEmission", "MultinomialEmission", "GaussianSingleEmission", "GaussianMixtureEmission",
           "averaged_state_marginals", "relabelled_draws"]

"""The model check and SVI's set-up run as one compiled program each (inference.mcmc.check_model,
inference.svi._init_compiled), and fall back to NumPyro's eager set-up where a compiled one would
leave traced values behind; SVI's ELBO takes its sites in sorted order (inference.svi.TraceELBO)."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.optim
import pytest
from numpyro.infer import SVI

import inference  # noqa: F401 - float64, as the zoo runs
from inference import svi
from inference.errors import ModelError
from inference.mcmc import _trace_at_init, check_model
from inference.staging import holds_tracer
from inference.svi import _init_compiled, make_elbo, make_guide
from pgm.conjugate import EightSchools


def _eight_schools():
    return EightSchools(centered=False).model, EightSchools.data()


def test_check_model_runs_the_program_compiled_with_the_eager_values():
    model, data = _eight_schools()
    seen = []

    def spy(**kw):
        out = model(**kw)
        seen.append(isinstance(numpyro.sample("probe", dist.Normal(0.0, 1.0)), jax.core.Tracer))
        return out

    trace = check_model(spy, data, key=jax.random.PRNGKey(1))
    assert seen == [True]  # traced once, under jax.jit
    from numpyro.infer.initialization import init_to_uniform

    eager = _trace_at_init(spy, data, jax.random.PRNGKey(1), init_to_uniform)
    for name in ("mu", "tau", "theta_tilde", "probe"):
        # same operations on the same key; XLA may fuse them differently: rounding of a few ulps
        np.testing.assert_allclose(np.asarray(trace[name]["value"]), np.asarray(eager[name]["value"]),
                                   rtol=1e-13, atol=1e-13)
        assert not isinstance(trace[name]["value"], jax.core.Tracer)


def _bad_observation(concrete_branch):
    def model(y):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        if concrete_branch and float(z) > 1e9:  # Python control flow on a draw: not traceable
            z = z + 1.0
        numpyro.sample("y", dist.Exponential(jnp.exp(z)), obs=y)

    return model


@pytest.mark.parametrize("concrete_branch", [False, True])
def test_check_model_names_the_site_compiled_or_eager(concrete_branch):
    # compiled (no branch) and eager (the branch needs a concrete draw): the same error, naming 'y'
    with pytest.raises(ModelError, match=r"site 'y': the log-density is not finite at its observed value \(1 of 3"):
        check_model(_bad_observation(concrete_branch), {"y": np.array([1.0, -1.0, 2.0])}, key=0)


def _new_svi(model, guide):
    def make():
        g = make_guide(model, guide, backend="numpyro", rank=None)
        return g, SVI(model, g, numpyro.optim.Adam(0.01), make_elbo("trace", 1, backend="numpyro"))

    return make


@pytest.mark.parametrize("guide", ["normal", "delta", "mvn", "lowrank"])
def test_compiled_svi_init_equals_numpyros_eager_one(guide):
    model, data = _eight_schools()
    key = jax.random.PRNGKey(3)
    g, fitted, state = _init_compiled(_new_svi(model, guide), key, data)
    assert not holds_tracer([fitted.constrain_fn, getattr(g, "_postprocess_fn", None)])
    g2, eager = _new_svi(model, guide)()
    reference = eager.get_params(eager.init(key, **data))
    ours = fitted.get_params(state)
    assert sorted(ours) == sorted(reference)
    for name in ours:  # the same operations, compiled once or dispatched one by one: rounding only
        np.testing.assert_allclose(np.asarray(ours[name]), np.asarray(reference[name]), rtol=1e-12, atol=1e-12)


def test_a_program_run_once_is_compiled_for_compile_time_with_the_same_values():
    """``jit_once`` compiles with XLA's options for least compile time (which this XLA accepts, and
    which reach the compiler: the persistent cache keys on them); the values are those of
    ``jax.jit`` to rounding (float64: a few ulps of values of order 1)."""
    from inference.staging import ONCE, jit_once

    def f(x):
        return jnp.sum(jnp.log1p(jnp.exp(jnp.sin(x) * x[::-1]))) + jnp.cumsum(x ** 2)[-1]

    x = jnp.linspace(-3.0, 3.0, 1001)
    np.testing.assert_allclose(float(jit_once(f)(x)), float(jax.jit(f)(x)), rtol=1e-13)
    # the options reach XLA, which refuses a name it does not know: so each of ONCE's is one it takes
    with pytest.raises(Exception, match="No such compile option"):
        jax.jit(f, compiler_options={**ONCE, "xla_no_such_option": True}).lower(x).compile()
    for name, value in ONCE.items():
        jax.jit(f, compiler_options={name: value}).lower(x).compile()


def _array_bounds(y):
    # support bounds computed as arrays: inside a compiled set-up they are traced values
    s = numpyro.sample("s", dist.Uniform(jnp.zeros(()), jnp.asarray(10.0)))
    numpyro.sample("y", dist.Normal(0.0, s), obs=y)


def test_a_compiled_init_that_leaves_traced_values_is_detected_and_redone_eagerly():
    data = {"y": np.array([0.5, -1.0, 2.0, 1.5])}
    make = _new_svi(_array_bounds, "delta")
    g, leaky = make()
    state = jax.jit(lambda k: leaky.init(k, **data))(jax.random.PRNGKey(0))
    assert holds_tracer(leaky.constrain_fn)
    with pytest.raises(jax.errors.UnexpectedTracerError):
        leaky.get_params(state)  # what the fit would meet without the check
    g, fitted, state = _init_compiled(make, jax.random.PRNGKey(0), data)
    assert not holds_tracer(fitted.constrain_fn)
    # the MAP under a flat prior on (0, 10) is the maximum-likelihood scale sqrt(mean(y^2)) = 1.3693
    r = svi.fit(_array_bounds, data, key=0, guide="delta", steps=1500, learning_rate=0.05)
    # converged (the loss is flat over the last steps): the optimum to float64 rounding, with margin
    assert np.ptp(r.history[-10:]) < 1e-12
    assert abs(float(r.params["s_auto_loc"]) - np.sqrt(np.mean(data["y"] ** 2))) < 1e-9
    r = svi.fit(_array_bounds, data, key=0, guide="normal", steps=200, learning_rate=0.05, num_samples=4)
    assert np.all((r.samples["s"] > 0) & (r.samples["s"] < 10))


def testholds_tracer_walks_partials_handlers_and_closures():
    leaked = []
    jax.jit(lambda x: leaked.append(x) or x)(1.0)
    t = leaked[0]
    assert holds_tracer(functools.partial(print, {"a": [1, (2, t)]}))
    assert holds_tracer(numpyro.handlers.substitute(print, data={"w": t}))
    assert holds_tracer(dist.transforms.AffineTransform(t, 1.0))
    assert holds_tracer((lambda: t))
    assert not holds_tracer(functools.partial(print, {"a": [1, (2, jnp.ones(2))]}))


def test_nuts_starts_from_a_compiled_initialisation_and_constrains_its_draws():
    from inference import mcmc

    model, data = _eight_schools()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    from numpyro.infer.initialization import init_to_uniform

    start = mcmc._compiled_start(model, data, keys, init_to_uniform)
    assert start is not None
    param_info, potential_fn, postprocess = start
    assert np.shape(param_info.potential_energy) == (2,)
    # the potential at the start is NumPyro's, recomputed eagerly from the returned point
    np.testing.assert_allclose(float(potential_fn(jax.tree_util.tree_map(lambda v: v[0], param_info.z))),
                               float(param_info.potential_energy[0]), rtol=1e-12)
    r = mcmc.nuts(model, data, key=0, num_samples=200, num_warmup=200, num_chains=2)
    # draws come back constrained (tau > 0) with the deterministic site: theta = mu + tau * theta_tilde
    assert np.all(r.samples["tau"] > 0)
    np.testing.assert_allclose(r.samples["theta"],
                               r.samples["mu"][:, None] + r.samples["tau"][:, None] * r.samples["theta_tilde"],
                               rtol=1e-12, atol=1e-12)


def _with_param(y):
    # a parameter of the program: NumPyro substitutes its first-trace value into the potential
    w = numpyro.param("w", jnp.asarray(2.0), constraint=dist.constraints.positive)
    s = numpyro.sample("s", dist.HalfNormal(w))
    numpyro.sample("y", dist.Normal(0.0, s), obs=y)


def test_nuts_falls_back_to_numpyros_start_where_a_compiled_one_leaves_traced_values():
    from numpyro.infer.initialization import init_to_uniform

    from inference import mcmc

    data = {"y": np.array([0.5, -1.0, 2.0, 1.5])}
    keys = jax.random.split(jax.random.PRNGKey(0), 1)
    assert mcmc._compiled_start(_with_param, data, keys, init_to_uniform) is None
    r = mcmc.nuts(_with_param, data, key=0, num_samples=100, num_warmup=100)
    assert np.all(r.samples["s"] > 0)
    # bounds computed as arrays are no obstacle here: NumPyro recomputes a dynamic support's
    # transform at each call, so nothing traced is kept
    assert mcmc._compiled_start(_array_bounds, data, keys, init_to_uniform) is not None
    r = mcmc.nuts(_array_bounds, data, key=0, num_samples=100, num_warmup=100)
    assert np.all((r.samples["s"] > 0) & (r.samples["s"] < 10))


def test_nuts_without_a_finite_start_names_the_method():
    from inference import mcmc

    def model(y):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Exponential(jnp.exp(z)), obs=y)  # y < 0: -inf wherever z is

    with pytest.raises(ModelError, match="nuts: no initial point with a finite log-density"):
        mcmc.nuts(model, {"y": np.array([-1.0])}, key=0, num_samples=5, num_warmup=5, check=False)


def test_trace_elbo_is_numpyros_estimator():
    from numpyro import infer

    from inference.svi import TraceELBO

    model, data = _eight_schools()
    g, fitted = _new_svi(model, "normal")()
    params = fitted.get_params(fitted.init(jax.random.PRNGKey(0), **data))
    for k in (1, 8):  # same draws, same terms: equal up to the order of a float sum (a few ulps)
        ours = lambda p: TraceELBO(k).loss(jax.random.PRNGKey(5), p, model, g, **data)  # noqa: E731
        theirs = lambda p: infer.Trace_ELBO(num_particles=k).loss(jax.random.PRNGKey(5), p, model, g, **data)  # noqa: E731
        np.testing.assert_allclose(float(ours(params)), float(theirs(params)), rtol=1e-13)
        a, b = jax.grad(ours)(params), jax.grad(theirs)(params)
        for name in a:
            np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-12, atol=1e-12)


_LOWERED = """
import sys
import jax
import inference
from inference.svi import TraceELBO, make_guide
from numpyro import infer
import numpyro, numpyro.distributions as dist

def model(y):
    a = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
    b = numpyro.sample("beta", dist.HalfNormal(1.0))
    c = numpyro.sample("gamma", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(a + c, b), obs=y)

g = make_guide(model, "normal", backend="numpyro", rank=None)
elbo = TraceELBO() if sys.argv[1] == "ours" else infer.Trace_ELBO()
svi = infer.SVI(model, g, numpyro.optim.Adam(0.01), elbo)
state = svi.init(jax.random.PRNGKey(0), y=1.0)
print(jax.jit(lambda s: svi.update(s, y=1.0)).lower(state).as_text())
"""


def test_the_svi_program_is_the_same_in_every_process():
    # Python salts string hashes per process: NumPyro's Trace_ELBO, which takes its sites in set
    # order, lowers to a different program from one process to the next (so JAX's persistent cache
    # never finds it again); ours lowers to one program.
    def lowered(which, seed):
        env = dict(os.environ, PYTHONHASHSEED=str(seed), GENZOO_CACHE="off")
        return subprocess.run([sys.executable, "-c", _LOWERED, which], capture_output=True, text=True, env=env,
                              check=True).stdout

    ours = {lowered("ours", seed) for seed in (1, 2, 3)}
    assert len(ours) == 1
    theirs = {lowered("numpyro", seed) for seed in (1, 2, 3)}
    assert len(theirs) > 1  # what the test guards against; 4 sites give 24 orders

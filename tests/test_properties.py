"""Property tests: random shapes and seeds, manual backward vs jax.vjp.

Hypothesis draws the shapes; each example compiles afresh, so the example
counts are small. The float64 finite-difference side is covered per layer in
the layer test files; here the point is breadth of shapes.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnnet as fn
from layer_checks import assert_trees_close

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
ACTS = [fn.Relu, fn.Tanh, fn.Sigmoid, fn.LeakyRelu(0.1), fn.Identity, fn.Gelu(), fn.Softplus, fn.Elu()]


def _manual_vs_vjp(layer, params, x, seed):
    @jax.jit  # one compile per drawn shape instead of one per eager op
    def both(params, x, key):
        y, res = layer.fwd(params, x)
        dy = jax.random.normal(key, y.shape, y.dtype)
        _, pullback = jax.vjp(lambda p, x: layer.fwd(p, x)[0], params, x)
        return layer.bwd(res, dy), pullback(dy)

    manual, ref = both(params, x, jax.random.key(seed))
    assert_trees_close(manual, ref, 1e-5, layer.name)


@SETTINGS
@given(batch=st.integers(1, 9), n_in=st.integers(1, 9), hidden=st.integers(1, 9),
       out=st.integers(1, 4), act=st.sampled_from(ACTS), seed=st.integers(0, 2**16))
def test_random_mlp_backward_matches_vjp(batch, n_in, hidden, out, act, seed):
    net = fn.serial(fn.Dense(hidden, b_init=fn.initializers.normal(0.5)), act, fn.Dense(out))
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = net.init(k1, (n_in,))
    x = jnp.asarray(2 * np.random.default_rng(seed).standard_normal((batch, n_in)), jnp.float32)
    _manual_vs_vjp(net, params, x, seed + 1)


@SETTINGS
@given(batch=st.integers(1, 9), k=st.integers(1, 6), seed=st.integers(0, 2**16),
       loss_name=st.sampled_from(["mse", "bce", "sce"]))
def test_random_loss_backward_matches_vjp(batch, k, seed, loss_name):
    k1, k2 = jax.random.split(jax.random.key(seed))
    z = 3 * jax.random.normal(k1, (batch, k))
    loss, t = {
        "mse": (fn.losses.mean_squared_error, jax.random.normal(k2, (batch, k))),
        "bce": (fn.losses.sigmoid_binary_cross_entropy, jax.random.uniform(k2, (batch, k))),
        "sce": (fn.losses.softmax_cross_entropy, jax.random.randint(k2, (batch,), 0, k)),
    }[loss_name]
    @jax.jit
    def both(z, t):
        value, res = loss.fwd(z, t)
        return loss.bwd(res, jnp.ones((), value.dtype)), jax.grad(lambda z: loss.fwd(z, t)[0])(z)

    manual, auto = both(z, t)
    assert_trees_close(manual, auto, 1e-5, loss.name)

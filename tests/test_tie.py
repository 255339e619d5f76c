"""Tied weights: one leaf used in several places gets the sum of its gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

K = jax.random.key(0)
V, D = 7, 4




def test_embedding_style_output_projection_tied():
    inner = fn.serial(fn.Unembed(V), fn.Tanh, fn.Dense(D), fn.Unembed(V))
    lm = fn.tie(inner, (0, "table"), (3, "table"))
    params = lm.init(K, (3, D))
    assert params[3] == {"table": None}
    assert len(jax.tree.leaves(params)) == 3          # the tied table is stored once
    x = jax.random.normal(K, (2, 3, D))
    assert_layer_correct(lm, params, x)


def test_tie_used_three_times_sums_three_gradients():
    inner = fn.serial(fn.Dense(D), fn.Tanh, fn.Dense(D), fn.Tanh, fn.Dense(D))
    net = fn.tie(inner, (0, "w"), (2, "w"), (4, "w"))
    params = net.init(K, (D,))
    x = jax.random.normal(K, (3, D))
    assert_layer_correct(net, params, x)
    # the source's gradient is the sum of the three uses' gradients
    dy = jax.random.normal(jax.random.key(2), (3, D))
    y, res = net.fwd(params, x)
    dparams, _ = net.bwd(res, dy)
    full = list(params)
    for i in (2, 4):
        full[i] = {**full[i], "w": params[0]["w"]}
    _, pullback = jax.vjp(lambda q: inner.fwd(q, x)[0], tuple(full))
    (g,) = pullback(dy)
    np.testing.assert_allclose(dparams[0]["w"], g[0]["w"] + g[2]["w"] + g[4]["w"],
                               rtol=1e-5, atol=1e-6)
    assert dparams[2]["w"] is None and dparams[4]["w"] is None


def test_tied_model_trains_with_an_optimizer():
    net = fn.tie(fn.serial(fn.Dense(D), fn.Tanh, fn.Dense(D)), (0, "w"), (2, "w"))
    params = net.init(K, (D,))
    x = jax.random.normal(K, (8, D))
    step = fn.train_step(net, fn.losses.mean_squared_error, fn.optim.adam(1e-2))
    state = fn.optim.adam(1e-2).init(params)
    losses = []
    for _ in range(30):
        params, state, v = step(params, state, x, x)
        losses.append(float(v))
    assert losses[-1] < 0.5 * losses[0]
    assert params[2]["w"] is None


@pytest.mark.parametrize("args, match", [
    (((0, "w"),), "at least one target"),
    (((0, "w"), (0, "w")), "must all be different"),
    (((0, "w"), (1, "w")), "no entry"),
    (((0, "w"), (2, "b")), "must match exactly"),
    ((("w",), (2, "w")), "no entry"),
])
def test_tie_errors(args, match):
    with pytest.raises(ValueError, match=match):
        fn.tie(fn.serial(fn.Dense(3), fn.Tanh, fn.Dense(4)), *args).init(K, (3,))


def test_tied_params_must_hold_none_at_the_target():
    net = fn.tie(fn.serial(fn.Dense(3), fn.Dense(3)), (0, "w"), (1, "w"))
    untied = fn.serial(fn.Dense(3), fn.Dense(3)).init(K, (3,))
    with pytest.raises(ValueError, match="must be None"):
        net.fwd(untied, jnp.ones((2, 3)))

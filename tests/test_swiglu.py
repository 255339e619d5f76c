"""SwiGLU: three-way check (with biases, so every leaf shows), a NumPy reference from the
definition, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def random_params(d, hidden, seed, bias=True):
    shapes = {"w_gate": (d, hidden), "w_up": (d, hidden), "w_down": (hidden, d)}
    if bias:
        shapes.update({"b_gate": (hidden,), "b_up": (hidden,), "b_down": (d,)})
    return {k: randn(s, seed + i, 0.5) for i, (k, s) in enumerate(shapes.items())}


def test_three_way():
    assert_layer_correct(fn.SwiGLU(6, bias=True), random_params(4, 6, 0), randn((2, 3, 4), 1),
                         seed=2)


@pytest.mark.parametrize("bias", [False, True])
def test_equals_numpy_reference(bias):
    p, x = random_params(5, 7, 3, bias), randn((2, 3, 5), 4)
    q = {k: np.asarray(v, np.float64) for k, v in p.items()}
    xn = np.asarray(x, np.float64)
    g, u = xn @ q["w_gate"] + q.get("b_gate", 0), xn @ q["w_up"] + q.get("b_up", 0)
    ref = (g / (1 + np.exp(-g)) * u) @ q["w_down"] + q.get("b_down", 0)
    layer = fn.SwiGLU(7, bias=bias)
    assert jax.tree.map(jnp.shape, layer.init(jax.random.key(0), (3, 5))) == \
        jax.tree.map(jnp.shape, p)
    np.testing.assert_allclose(fn.apply(layer, p, x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, err, match", [
    (lambda: fn.SwiGLU(0), ValueError, "hidden"),
    (lambda: fn.apply(fn.SwiGLU(7), random_params(5, 7, 0, bias=True), randn((2, 5))),
     ValueError, "keys"),
    (lambda: fn.apply(fn.SwiGLU(7), random_params(5, 7, 0, bias=False), randn((2, 4))),
     ValueError, "expects 5"),
    (lambda: fn.apply(fn.SwiGLU(7), random_params(5, 7, 0, bias=False),
                      jnp.ones((2, 5), jnp.int32)), TypeError, "floating"),
])
def test_bad_input_is_a_clear_error(call, err, match):
    with pytest.raises(err, match=match):
        call()

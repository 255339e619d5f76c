"""DP-SGD (fnnet.dp): clipped per-example sums against a vmap(grad) reference, the noise
draw, the step, and errors.

Reference: ``jax.vmap(jax.grad(own loss))`` over single examples, each clipped to
``C`` in NumPy, averaged. float64, tolerance 1e-10 relative to the largest entry
(the ghost-clipping backward adds the same products in another order); a wrong
clipping factor (C / norm without the min, norms of the wrong gradient, a missing
1/n) is off by order 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_trees_close

F64 = jnp.float64
CE = fn.losses.softmax_cross_entropy


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        net = fn.serial(fn.Dense(5), fn.Tanh, fn.Dense(3))
        params = jax.tree.map(lambda a: a.astype(F64), net.init(jax.random.key(0), (4,)))
        x = 2 * jax.random.normal(jax.random.key(1), (6, 4), F64)
        y = jnp.array([0, 1, 2, 0, 1, 2])
    return net, params, x, y


def reference(net, params, x, y, clip):
    def own(p, xi, yi):
        return CE.fwd(fn.apply(net, p, xi[None]), yi[None])[0]

    g = jax.jit(jax.vmap(jax.grad(own), (None, 0, 0)))(params, x, y)
    norms = np.sqrt(sum(np.sum(np.asarray(a).reshape(len(x), -1) ** 2, 1) for a in jax.tree.leaves(g)))
    factor = np.minimum(1.0, clip / norms)
    mean = jax.tree.map(lambda a: np.tensordot(factor, np.asarray(a), 1) / len(x), g)
    return mean, norms


@pytest.mark.parametrize("clip", [0.05, pytest.param(1e6, marks=pytest.mark.slow)])
def test_clipped_grad_equals_the_vmap_grad_reference(problem, clip):
    net, params, x, y = problem
    value, grad, norms = jax.jit(fn.dp.clipped_grad(net, CE, l2_norm_clip=clip))(params, x, y)
    ref, ref_norms = reference(net, params, x, y, clip)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-10)
    assert_trees_close(grad, ref, 1e-10, "clipped mean")
    batch_value, batch_grad = fn.value_and_grad(net, CE)(params, x, y)
    np.testing.assert_allclose(value, batch_value, rtol=1e-12)
    if clip == 0.05:  # every example clipped: the mean has norm <= C
        assert np.all(ref_norms > clip)
        total = np.sqrt(sum(np.sum(np.square(a)) for a in jax.tree.leaves(grad)))
        assert total <= clip + 1e-12
    else:  # nothing clipped: the ordinary batch gradient
        assert_trees_close(grad, batch_grad, 1e-10, "unclipped")



@pytest.mark.parametrize("memory", ["full", "lean"])
def test_clipped_grad_through_attention_scales_after_its_core(memory):
    """MultiHeadAttention's clipped sum scales dqkv (fwd.fnnet_scaled_grad), not dy: the
    same numbers as the vmap(grad) reference, causal or not, in both memory modes."""
    net = fn.serial(fn.Dense(8), fn.MultiHeadAttention(2, causal=True, memory=memory,
                                                       block_size=2), fn.Dense(3))
    assert net.fwd.fnnet_layers[1].fwd.fnnet_scaled_grad
    params = jax.tree.map(lambda a: a.astype(F64), net.init(jax.random.key(2), (4, 3)))
    x = jax.random.normal(jax.random.key(3), (5, 4, 3), F64)
    y = jnp.array([[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2], [0, 0, 1, 1], [2, 2, 1, 0]])
    _, grad, norms = jax.jit(fn.dp.clipped_grad(net, CE, l2_norm_clip=0.3))(params, x, y)
    ref, ref_norms = reference(net, params, x, y, 0.3)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-10)
    assert_trees_close(grad, ref, 1e-10, "clipped mean through attention")

def test_noise_is_the_documented_draw(problem):
    net, params, x, y = problem
    clip, sigma, key = 0.5, 1.3, jax.random.key(42)
    noisy = jax.jit(fn.dp.private_grad(net, CE, l2_norm_clip=clip, noise_multiplier=sigma))
    _, g, _ = noisy(params, x, y, key=key)
    _, clean, _ = jax.jit(fn.dp.clipped_grad(net, CE, l2_norm_clip=clip))(params, x, y)
    k_noise, _ = jax.random.split(key)
    leaves = jax.tree.leaves(clean)
    keys = jax.random.split(k_noise, len(leaves))
    want = [c + sigma * clip / len(x) * jax.random.normal(k, c.shape, c.dtype)
            for c, k in zip(leaves, keys)]
    for got, w in zip(jax.tree.leaves(g), want):
        np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)
    _, again, _ = noisy(params, x, y, key=key)  # same key, same step
    assert_trees_close(again, g, 0.0, "same key")
    _, other, _ = noisy(params, x, y, key=jax.random.key(43))
    assert not np.allclose(jax.tree.leaves(other)[0], jax.tree.leaves(g)[0])


def test_train_step_is_sgd_on_the_private_gradient(problem, monkeypatch):
    net, params, x, y = problem

    def forbidden(*a, **k):
        raise AssertionError("autodiff was called on the manual path")

    for name in ("grad", "vjp", "value_and_grad"):
        monkeypatch.setattr(jax, name, forbidden)
    opt = fn.optim.sgd(0.1)
    step = fn.dp.train_step(net, CE, opt, l2_norm_clip=0.3, noise_multiplier=0.7)
    key = jax.random.key(3)
    new, _, value = step(params, opt.init(params), x, y, key=key)
    _, g, _ = jax.jit(fn.dp.private_grad(net, CE, l2_norm_clip=0.3, noise_multiplier=0.7))(
        params, x, y, key=key)
    assert_trees_close(new, jax.tree.map(lambda p, d: p - 0.1 * d, params, g), 1e-12, "step")
    assert np.isfinite(value)


def test_errors_are_clear(problem):
    net, params, x, y = problem
    with pytest.raises(ValueError, match="l2_norm_clip must be a positive"):
        fn.dp.clipped_grad(net, CE, l2_norm_clip=0)
    with pytest.raises(ValueError, match="noise_multiplier must be a number >= 0"):
        fn.dp.train_step(net, CE, fn.optim.sgd(0.1), noise_multiplier=-1)
    with pytest.raises(ValueError, match="needs an explicit PRNG key"):
        fn.dp.private_grad(net, CE)(params, x, y, key=None)
    bn = fn.serial(fn.Dense(3), fn.BatchNorm())
    with pytest.raises(ValueError, match="BatchNorm"):
        fn.dp.clipped_grad(bn, CE)

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
    """MultiHeadAttention's clipped sum scales dqkv (its record's scaled_grad), not dy: the
    same numbers as the vmap(grad) reference, causal or not, in both memory modes."""
    net = fn.serial(fn.Dense(8), fn.MultiHeadAttention(2, causal=True, memory=memory,
                                                       block_size=2), fn.Dense(3))
    assert fn.core.meta(fn.core.meta(net).graph.children[1]).scaled_grad
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


# --- DP-SGD in fit -----------------------------------------------------------------------

def _hand_loop(net, params, x, y, opt, key, epochs, batch_size, clip, sigma):
    """The documented key derivation of fit(dp=...), written out with fn.dp.train_step."""
    step = fn.dp.train_step(net, CE, opt, l2_norm_clip=clip, noise_multiplier=sigma)
    opt_state, losses = opt.init(params), []
    n = x.shape[0]
    for e in range(epochs):
        k = jax.random.fold_in(key, e)
        if batch_size is None:
            params, opt_state, v = step(params, opt_state, x, y, key=k)
            losses.append(float(v))
            continue
        k_perm, k_steps = jax.random.split(k)
        nb = n // batch_size
        idx = jax.random.permutation(k_perm, n)[: nb * batch_size].reshape(nb, batch_size)
        values = []
        for i, sk in zip(idx, jax.random.split(k_steps, nb)):
            params, opt_state, v = step(params, opt_state, x[i], y[i], key=sk)
            values.append(float(v))
        losses.append(np.mean(values))
    return params, opt_state, np.array(losses)


@pytest.mark.parametrize("batch_size", [None, 2], ids=["full-batch", "minibatch"])
def test_fit_with_dp_equals_the_hand_written_dp_loop(problem, batch_size):
    net, params, x, y = problem
    opt, key = fn.optim.sgd(0.2, momentum=0.5), jax.random.key(3)
    dp = fn.dp.DPConfig(l2_norm_clip=0.3, noise_multiplier=0.8)
    p, s, h = fn.fit(net, CE, opt, params, x, y, epochs=3, batch_size=batch_size, key=key, dp=dp)
    ref_p, ref_s, ref_losses = _hand_loop(net, params, x, y, opt, key, 3, batch_size, 0.3, 0.8)
    assert_trees_close(p, ref_p, 1e-10, "params")
    assert_trees_close(s, ref_s, 1e-10, "opt_state")
    np.testing.assert_allclose(h["loss"], ref_losses, rtol=1e-10)
    plain = fn.fit(net, CE, opt, params, x, y, epochs=3, batch_size=batch_size, key=key)[0]
    assert not np.allclose(plain[0]["w"], p[0]["w"])          # the noise and clipping acted


def test_fit_with_dp_resumes_bit_for_bit(problem, tmp_path):
    net, params, x, y = problem
    opt, key = fn.optim.adam(0.05), jax.random.key(5)
    dp = {"l2_norm_clip": 0.5, "noise_multiplier": 1.0}
    whole = fn.fit(net, CE, opt, params, x, y, epochs=4, batch_size=3, key=key, dp=dp)
    p, s, h1 = fn.fit(net, CE, opt, params, x, y, epochs=2, batch_size=3, key=key, dp=dp)
    fn.save(tmp_path / "dp.npz", {"params": p, "opt_state": s})
    ckpt = fn.load(tmp_path / "dp.npz")                        # NamedTuples rebuilt, no like=
    p, s, h2 = fn.fit(net, CE, opt, ckpt["params"], x, y, opt_state=ckpt["opt_state"], epochs=4,
                      initial_epoch=2, batch_size=3, key=key, dp=dp)
    for a, b in zip(jax.tree.leaves((p, s)), jax.tree.leaves(whole[:2])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert np.concatenate([h1["loss"], h2["loss"]]).tobytes() == whole[2]["loss"].tobytes()


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(), ValueError, "draws fresh noise every step from the key"),
    (dict(key=jax.random.key(0), method="autodiff"), ValueError, "method must be 'manual'"),
    (dict(key=jax.random.key(0), regularizer=fn.l2(1e-3)), ValueError, "drop regularizer="),
    (dict(key=jax.random.key(0), dp=(1.0, 1.0)), TypeError, "dp must be fn.dp.DPConfig"),
    (dict(key=jax.random.key(0), dp={"clip": 1.0}), TypeError, "unknown ['clip']"),
    (dict(key=jax.random.key(0), dp=fn.dp.DPConfig(-1.0)), ValueError, "l2_norm_clip must be a positive"),
])
def test_fit_with_dp_errors(problem, kwargs, error, match):
    net, params, x, y = problem
    kwargs.setdefault("dp", fn.dp.DPConfig())
    with pytest.raises(error, match=match.replace("(", r"\(").replace("[", r"\[")):
        fn.fit(net, CE, fn.optim.sgd(0.1), params, x, y, epochs=1, **kwargs)
    bn = fn.serial(fn.Dense(3), fn.BatchNorm())
    bp = bn.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match="has layer state"):
        fn.fit(bn, CE, fn.optim.sgd(0.1), bp, x, y, epochs=1, key=jax.random.key(0),
               state=fn.init_state(bn, bp), dp=fn.dp.DPConfig())

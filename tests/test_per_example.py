"""Per-example gradients and norms (fnnet.per_example) against autodiff references.

References, both autodiff: ``jax.vmap(jax.grad(own loss))`` over single examples
(the contract's definition) and, for random layers, ``jax.jacrev`` of the vector
of the examples' own losses computed from ONE batch forward (same dropout
masks). Everything runs in float64 (``jax.enable_x64``), so the tolerance is
1e-10 relative to the leaf's largest entry: the manual and autodiff paths add
the same products in different orders (errors ~1e-15); a wrong rule (a missing
factor n, a transposed kernel, a norm of the wrong sum) is off by order 1.

The default run covers Dense, Tanh and the small GPT (Dense on sequences,
LayerNorm, Gelu, Embedding, PositionalEmbedding, MultiHeadAttention, Unembed, the
tie, residual); the slow run adds MSE on sequences, convolutions, pooling, the graph combinators,
RMSNorm, LSTM (the vmap fallback), Dropout and a rule-less layer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.per_example import ghost_sqnorm, per_example_losses
from layer_checks import assert_trees_close

F64 = jnp.float64
CE, MSE = fn.losses.softmax_cross_entropy, fn.losses.mean_squared_error


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def vmap_grad_reference(model, loss, params, x, y):
    def own(p, xi, yi):
        return loss.fwd(fn.apply(model, p, xi[None]), yi[None])[0]

    return jax.vmap(jax.grad(own), (None, 0, 0))(params, x, y)


def sqnorms(tree, n):
    return sum(np.sum(np.asarray(a).reshape(n, -1) ** 2, axis=1) for a in jax.tree.leaves(tree))


def check(model, loss, params, x, y, *, key=None):
    def run(p):  # one compilation: manual grads, manual norms and the reference
        got = fn.per_example_grads(model, loss, p, x, y, key=key)
        norms = fn.per_example_grad_norms(model, loss, p, x, y, key=key)
        if key is None:
            ref = vmap_grad_reference(model, loss, p, x, y)
        else:
            ref = jax.jacrev(lambda q: per_example_losses(loss, model.fwd(q, x, key=key)[0], y)[0])(p)
        return got, norms, ref

    got, norms, ref = jax.jit(run)(params)
    assert_trees_close(got, ref, 1e-10, "per_example_grads")
    assert norms.shape == (x.shape[0],)
    np.testing.assert_allclose(norms, np.sqrt(sqnorms(ref, x.shape[0])), rtol=1e-10)
    return got, norms


def init(model, shape, seed=0):
    return jax.tree.map(lambda a: a.astype(F64), model.init(jax.random.key(seed), shape))


def test_mlp_equals_vmap_grad_and_is_n_times_the_share():
    net = fn.serial(fn.Dense(5), fn.Tanh, fn.Dense(3))
    params = init(net, (4,))
    x = jax.random.normal(jax.random.key(1), (6, 4), F64)
    y = jnp.array([0, 1, 2, 0, 1, 2])
    got, _ = check(net, CE, params, x, y)
    # own loss = n x share: the mean over examples is the batch gradient
    _, batch = jax.jit(fn.value_and_grad(net, CE))(params, x, y)
    assert_trees_close(jax.tree.map(lambda g: g.mean(0), got), batch, 1e-12, "mean")


@pytest.mark.slow
def test_sequences_use_the_ghost_norm_and_mse_own_loss():
    # Dense on (n, T, d): per-example dw sums over T; MSE's own loss is the mean over
    # one example's elements
    net = fn.serial(fn.Dense(3), fn.Gelu(), fn.LayerNorm(), fn.Flatten, fn.Dense(2))
    params = init(net, (5, 4))
    x = jax.random.normal(jax.random.key(2), (3, 5, 4), F64)
    y = jax.random.normal(jax.random.key(3), (3, 2), F64)
    check(net, MSE, params, x, y)


@pytest.mark.parametrize("t,p,q", [(2, 5, 6), (6, 2, 3)])
def test_ghost_sqnorm_both_branches(t, p, q):
    # 2 T^2 < p q takes the ghost branch ((2,5,6)); otherwise the product is formed
    a = jax.random.normal(jax.random.key(0), (3, t, p), F64)
    b = jax.random.normal(jax.random.key(1), (3, t, q), F64)
    ref = np.sum(np.einsum("ntp,ntq->npq", a, b) ** 2, axis=(1, 2))
    np.testing.assert_allclose(ghost_sqnorm(a, b), ref, rtol=1e-12)


@pytest.mark.slow
def test_cnn_with_residual_and_graph_combinators():
    net = fn.serial(fn.Conv2D(3, 3, stride=2), fn.Relu, fn.MaxPool2D(2, 1),
                    fn.Flatten, fn.Dense(4), fn.residual(fn.serial(fn.Dense(4), fn.Tanh)),
                    fn.FanOut(2), fn.parallel(fn.Dense(3), fn.serial(fn.Elu(), fn.Dense(3))),
                    fn.FanInSum)
    params = init(net, (7, 7, 2))
    x = jax.random.normal(jax.random.key(4), (3, 7, 7, 2), F64)
    check(net, CE, params, x, jnp.array([0, 2, 1]))


def test_small_gpt_with_tied_embeddings():
    # Embedding (ghost norm over repeated ids), PositionalEmbedding, LayerNorm,
    # MultiHeadAttention (ghost norms of both projections), Unembed, and the tie
    # (norm cross terms of the two uses of the table)
    gpt = fn.models.gpt(7, 6, d_model=8, num_heads=2, num_layers=1)
    params = init(gpt, (5,))
    ids = jnp.array([[1, 2, 1, 1, 0], [3, 3, 3, 3, 3], [6, 5, 4, 0, 2]])
    check(gpt, CE, params, ids, jnp.roll(ids, -1, axis=1))


@pytest.mark.slow
def test_conv1d_rmsnorm_recurrent_and_an_embedding_formed_per_example():
    # the Embedding's table is formed when cheaper (T^2 > num * features); LSTM has no
    # rule and takes the exact vmap fallback
    net = fn.serial(fn.Embedding(3, 2), fn.Conv1D(3, 3, stride=2), fn.RMSNorm(),
                    fn.Conv1D(2, 2, padding="CAUSAL", dilation=2), fn.LSTM(3), fn.Flatten,
                    fn.Dense(2))
    params = init(net, (9,))
    ids = jax.random.randint(jax.random.key(9), (3, 9), 0, 3)
    check(net, CE, params, ids, jnp.array([0, 1, 1]))


@pytest.mark.slow
def test_dropout_uses_the_batch_masks():
    net = fn.serial(fn.Dense(6), fn.Relu, fn.Dropout(0.5), fn.Dense(2))
    params = init(net, (3,))
    x = jax.random.normal(jax.random.key(5), (4, 3), F64)
    y = jax.random.uniform(jax.random.key(6), (4, 2), F64)
    check(net, fn.losses.sigmoid_binary_cross_entropy, params, x, y, key=jax.random.key(7))


@pytest.mark.slow
def test_a_layer_without_a_rule_falls_back_exactly():
    dense = fn.Dense(2)
    bare = fn.Layer(dense.init, lambda p, x, *, key=None: dense.fwd(p, x), dense.bwd)
    net = fn.serial(bare, fn.Sigmoid, fn.Dense(2))
    params = init(net, (3,))
    x = jax.random.normal(jax.random.key(8), (5, 3), F64)
    check(net, CE, params, x, jnp.array([0, 1, 1, 0, 1]))


def test_norm_rules_never_form_per_example_gradients():
    # the compiled norms of a wide Dense hold no (n, in, out) array
    net = fn.serial(fn.Dense(64), fn.Relu, fn.Dense(64))
    params = net.init(jax.random.key(0), (64,))
    x, y = jnp.ones((32, 64)), jnp.zeros((32, 64))
    with jax.enable_x64(False):
        hlo = jax.jit(lambda p: fn.per_example_grad_norms(net, MSE, p, x, y)).lower(
            params).as_text()
    assert "32x64x64" not in hlo
    assert "32x64x64" in jax.jit(lambda p: fn.per_example_grads(net, MSE, p, x, y)).lower(
        params).as_text()


def test_no_autodiff_on_the_manual_path(monkeypatch):
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(2))
    params = init(net, (2,))
    x, y = jnp.ones((2, 2), F64), jnp.array([0, 1])

    def forbidden(*a, **k):
        raise AssertionError("autodiff was called on the manual path")

    for name in ("grad", "vjp", "value_and_grad"):
        monkeypatch.setattr(jax, name, forbidden)
    jax.jit(lambda p: (fn.per_example_grads(net, CE, p, x, y),
                       fn.per_example_grad_norms(net, CE, p, x, y)))(params)


def test_errors_are_clear():
    net = fn.serial(fn.Dense(2))
    params = init(net, (2,))
    with pytest.raises(ValueError, match="non-empty batch"):
        fn.per_example_grads(net, CE, params, jnp.zeros((0, 2)), jnp.zeros((0,), jnp.int32))
    drop = fn.serial(fn.Dropout(0.5), fn.Dense(2))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fn.per_example_grad_norms(drop, CE, init(drop, (2,)), jnp.ones((2, 2)), jnp.array([0, 1]))
    bn = fn.serial(fn.Dense(2), fn.BatchNorm())
    with pytest.raises(ValueError, match=r"BatchNorm\(.*\) couples the examples"):
        fn.per_example_grads(bn, CE, init(bn, (2,)), jnp.ones((2, 2)), jnp.array([0, 1]),
                             key=jax.random.key(0))

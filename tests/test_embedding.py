"""Embedding: gather forward, scatter-add backward (repeated ids sum), integer input,
loud out-of-range ids, and an Embedding-first model through serial and check_grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_trees_close

V, D = 5, 3


def setup(seed=0):
    layer = fn.Embedding(V, D)
    params = layer.init(jax.random.key(seed), ())
    return layer, params


IDS = jnp.array([[0, 4, 2, 4], [4, 1, 1, 0]], jnp.int32)   # repeated ids, (batch, time)


def test_forward_is_a_lookup_of_any_shape():
    layer, params = setup()
    assert params["table"].shape == (V, D) and params["table"].dtype == jnp.float32
    table = np.asarray(params["table"])
    for ids in (jnp.array([3, 0]), IDS.reshape(2, 2, 2)):   # (batch,) and (batch, 2, 2)
        y = fn.apply(layer, params, ids)
        assert y.shape == (*ids.shape, D)
        np.testing.assert_array_equal(y, table[np.asarray(ids)])


def test_backward_scatter_adds_repeated_ids_and_has_no_input_gradient():
    layer, params = setup()
    y, res = layer.fwd(params, IDS)
    dy = jnp.asarray(np.random.default_rng(0).standard_normal(y.shape), jnp.float32)
    dparams, dx = layer.bwd(res, dy)
    assert dx is None
    ref = np.zeros((V, D))
    np.add.at(ref, np.asarray(IDS).reshape(-1), np.asarray(dy).reshape(-1, D))
    np.testing.assert_allclose(dparams["table"], ref, rtol=1e-6)
    assert dparams["table"].dtype == jnp.float32
    np.testing.assert_array_equal(dparams["table"][3], 0)   # id 3 never used
    # manual vs jax.vjp w.r.t. the table, and under jit
    _, pullback = jax.vjp(lambda p: layer.fwd(p, IDS)[0], params)
    assert_trees_close(dparams, pullback(dy)[0], 1e-6, "Embedding dtable")
    jitted = jax.jit(lambda p, i, dy: layer.bwd(layer.fwd(p, i)[1], dy)[0])(params, IDS, dy)
    assert_trees_close(jitted, dparams, 1e-6, "Embedding jit vs eager")


def test_check_layer_float64_finite_differences():
    layer, params = setup(1)
    report = fn.check_layer(layer, params, IDS)
    assert report.ok, str(report)
    assert [leaf.path for leaf in report.leaves] == ["[0]['table']"]   # no row for integer ids


def test_float_ids_are_a_type_error():
    layer, params = setup()
    with pytest.raises(TypeError, match=r"Embedding\(5, 3\): expected integer ids, got dtype float32"):
        layer.fwd(params, jnp.array([0.0, 1.0]))


@pytest.mark.parametrize("bad,rng", [(5, r"\[0, 5\]"), (-1, r"\[-1, 4\]")])
def test_out_of_range_ids_raise_when_concrete(bad, rng):
    layer, params = setup()
    ids = IDS.at[1, 2].set(bad)
    with pytest.raises(ValueError, match=r"Embedding\(5, 3\): ids must be in \[0, 5\), got ids in " + rng):
        layer.fwd(params, ids)


def test_out_of_range_ids_under_jit_give_nan_rows_never_clamped():
    layer, params = setup()
    ids = jnp.array([[0, 5, -1, 4]], jnp.int32)
    y, res = jax.jit(layer.fwd)(params, ids)
    assert np.isnan(y[0, 1]).all() and np.isnan(y[0, 2]).all()     # 5 and -1: not 4, not 0
    np.testing.assert_array_equal(y[0, 0], params["table"][0])
    np.testing.assert_array_equal(y[0, 3], params["table"][4])
    dparams, _ = jax.jit(layer.bwd)(res, jnp.ones_like(y))
    np.testing.assert_array_equal(dparams["table"].sum(axis=1), [3.0, 0, 0, 0, 3.0])  # dropped


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    layer, params = setup(2)
    module = torch.nn.Embedding(V, D).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(np.asarray(params["table"], np.float64)))
    dy = np.random.default_rng(3).standard_normal((*IDS.shape, D))
    out = module(torch.tensor(np.asarray(IDS), dtype=torch.long))
    (out * torch.tensor(dy)).sum().backward()
    y, res = layer.fwd(params, IDS)
    dparams, _ = layer.bwd(res, jnp.asarray(dy, jnp.float32))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-7)
    np.testing.assert_allclose(dparams["table"], module.weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_embedding_first_model_inits_from_the_id_shape():
    net = fn.serial(fn.Embedding(V, 4), fn.LSTM(3), fn.Dense(V))
    params = net.init(jax.random.key(0), (4,))
    assert params[0]["table"].shape == (V, 4) and params[1]["w_ih"].shape == (4, 12)
    assert params[2]["w"].shape == (3, V)


@pytest.mark.slow  # the char-LSTM example's test trains this model manual vs autodiff
def test_embedding_lstm_dense_check_grads():
    net = fn.serial(fn.Embedding(V, 4), fn.LSTM(3), fn.Dense(V))
    params = net.init(jax.random.key(0), (4,))
    labels = jnp.roll(IDS, -1, axis=1)
    report = fn.check_grads(net, fn.losses.softmax_cross_entropy, params, IDS, labels)
    assert report.ok, str(report)

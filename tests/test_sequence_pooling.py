"""LastStep, SelectStep, MeanOverTime, MaxOverTime (fnnet/layers/sequence_pooling.py):
three-way checks (with and without masks), a NumPy reference, PyTorch in float64 (when
installed), an LSTM classifier trained by fit on a tuple input (ids, mask), errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

B, T, D = 3, 5, 4
X = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, D)), jnp.float32)
# sequence 0 has 3 steps, sequence 1 all 5, sequence 2 none (fully masked)
MASK = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
WEIGHTS = jnp.array([[1.0, 0.5, 2.0, 0.0, 0.0], [1, 1, 1, 1, 1], [0.3, 0, 0, 0, 0]], jnp.float32)

# Three-way checks with few compiles: the layers side by side in one graph per input kind
# (FanOut copies the input, tuple (x, mask) included; every layer gets its own rows).
STACKS = {
    "x": (fn.serial(fn.FanOut(4), fn.parallel(fn.LastStep, fn.SelectStep(-4), fn.MeanOverTime(),
                                              fn.MaxOverTime()), fn.FanInConcat()), X),
    "(x, bool mask)": (fn.serial(fn.FanOut(2), fn.parallel(fn.MeanOverTime(), fn.MaxOverTime()),
                                 fn.FanInConcat()), (X, MASK)),
    "(x, float weights)": (fn.serial(fn.FanOut(2), fn.parallel(fn.MeanOverTime(),
                                                               fn.MaxOverTime()),
                                     fn.FanInConcat()), (X, WEIGHTS)),
}


@pytest.mark.parametrize("kind", list(STACKS))
def test_three_ways(kind):
    layer, x = STACKS[kind]
    report = assert_layer_correct(layer, layer.init(jax.random.key(0), _shapes(x)), x)
    assert [leaf.path for leaf in report.leaves] == (["dx"] if kind == "x" else
                                                     ["dx[0]"] if "bool" in kind else
                                                     ["dx[0]", "dx[1]"])


def _shapes(x):
    return tuple(a.shape[1:] for a in x) if isinstance(x, tuple) else x.shape[1:]


def numpy_pool(name, x, mask=None):
    x = np.asarray(x, np.float64)
    w = np.ones(x.shape[:2]) if mask is None else np.asarray(mask, np.float64)
    if name == "mean":
        total = w.sum(1, keepdims=True)
        return np.where(total > 0, (w[..., None] * x).sum(1) / np.where(total > 0, total, 1), 0)
    on = (w != 0)[..., None]
    y = np.where(on, x, -np.inf).max(1)
    return np.where(on.any(1), y, 0)


def test_values_equal_a_numpy_reference():
    np.testing.assert_array_equal(fn.apply(fn.LastStep, (), X), X[:, -1])
    np.testing.assert_array_equal(fn.apply(fn.SelectStep(-5), (), X), X[:, 0])
    for mask in (None, MASK, WEIGHTS):
        inp = X if mask is None else (X, mask)
        np.testing.assert_allclose(fn.apply(fn.MeanOverTime(), (), inp),
                                   numpy_pool("mean", X, mask), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(fn.apply(fn.MaxOverTime(), (), inp),
                                   numpy_pool("max", X, mask), rtol=0)


def test_masked_steps_are_never_read_and_ties_go_to_the_first_step():
    padded = X.at[0, 3:].set(jnp.nan)                  # NaN padding under the mask
    for layer in (fn.MeanOverTime(), fn.MaxOverTime()):
        y, res = layer.fwd((), (padded, MASK))
        assert np.all(np.isfinite(y))
        dx, dmask = layer.bwd(res, jnp.ones_like(y))[1]
        assert dmask is None and np.all(dx[0, 3:] == 0) and np.all(dx[2] == 0)
    tied = jnp.ones((1, 3, 2))
    _, dx = fn.MaxOverTime().bwd(fn.MaxOverTime().fwd((), tied)[1], jnp.ones((1, 2)))
    np.testing.assert_array_equal(dx[0], [[1, 1], [0, 0], [0, 0]])
    nan_in = X.at[1, 2, 0].set(jnp.nan)                 # a NaN step is the maximum: stays NaN
    assert np.isnan(fn.apply(fn.MaxOverTime(), (), nan_in)[1, 0])


def test_match_pytorch_float64():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((B, T, D))
    m = np.asarray(MASK[:2], np.float64)
    dy = np.random.default_rng(2).standard_normal((B, D))
    with jax.enable_x64(True):
        for layer, inp, ref in [
                (fn.LastStep, x, lambda t: t[:, -1]),
                (fn.SelectStep(2), x, lambda t: t[:, 2]),
                (fn.MeanOverTime(), x, lambda t: t.mean(1)),
                (fn.MaxOverTime(), x, lambda t: t.max(1).values),
                (fn.MeanOverTime(), (x[:2], m), lambda t: (t * torch.tensor(m)[..., None]).sum(1)
                 / torch.tensor(m).sum(1, keepdim=True))]:
            xs = inp if isinstance(inp, np.ndarray) else inp[0]
            xt = torch.tensor(xs, requires_grad=True)
            yt = ref(xt)
            (yt * torch.tensor(dy[: len(xs)])).sum().backward()
            y, res = layer.fwd((), jnp.asarray(xs) if inp is xs else (jnp.asarray(xs), jnp.asarray(m)))
            dx = layer.bwd(res, jnp.asarray(dy[: len(xs)]))[1]
            dx = dx if inp is xs else dx[0]
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, err_msg=layer.name)
            np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15,
                                       err_msg=layer.name)


def test_an_rnn_classifier_on_padded_sequences_trains_with_fit():
    """ids and mask travel as ONE tuple input through parallel(...) into MeanOverTime:
    fit, evaluate and predict batch every entry of the tuple."""
    V, L, n = 6, 7, 48
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, L + 1, n)
    mask = np.arange(L)[None] < lengths[:, None]
    ids = np.where(mask, rng.integers(1, V, (n, L)), 0).astype(np.int32)
    y = jnp.asarray((np.where(mask, ids, 0) == 3).any(1).astype(np.int32))  # "contains a 3"
    x = (jnp.asarray(ids), jnp.asarray(mask))
    model = fn.serial(fn.parallel(fn.serial(fn.Embedding(V, 8), fn.GRU(8)), fn.Identity),
                      fn.MeanOverTime(), fn.Dense(2))
    params = model.init(jax.random.key(0), ((L,), (L,)))
    ce = fn.losses.softmax_cross_entropy
    params, _, history = fn.fit(model, ce, fn.optim.adam(3e-2), params, x, y, epochs=30,
                                batch_size=16, key=jax.random.key(1))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    scores = fn.evaluate(model, ce, params, x, y)
    assert scores["accuracy"] > 0.8
    np.testing.assert_allclose(fn.predict(model, params, x, batch_size=20),
                               fn.apply(model, params, x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_check_grads_and_diagnostics_take_a_tuple_input():
    model = fn.serial(fn.parallel(fn.serial(fn.Embedding(5, 3), fn.GRU(3)), fn.Identity),
                      fn.MeanOverTime(), fn.Dense(2))
    params = model.init(jax.random.key(0), ((4,), (4,)))
    x = (jnp.array([[1, 2, 3, 0], [4, 1, 0, 0]]), jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool))
    report = fn.check_grads(model, fn.losses.softmax_cross_entropy, params, x, jnp.array([0, 1]),
                            num_directions=1)
    assert report.ok, report
    diag = fn.gradient_diagnostics(model, fn.losses.softmax_cross_entropy, params, x,
                                   jnp.array([0, 1]))
    assert diag.wrong_layers == () and diag.layers[0].vjp_error is not None


@pytest.mark.parametrize("call,error,match", [
    (lambda: fn.apply(fn.LastStep, (), jnp.ones((2, 3))), ValueError, "no time axis to pool over"),
    (lambda: fn.apply(fn.SelectStep(5), (), X), ValueError, "step 5 is out of range for sequences of 5"),
    (lambda: fn.SelectStep(1.0), TypeError, "i must be an int"),
    (lambda: fn.apply(fn.MeanOverTime(), (), (X, MASK[:, :3])), ValueError, "mask shape (3, 3) must be"),
    (lambda: fn.apply(fn.MaxOverTime(), (), (X, MASK, MASK)), ValueError, "expected a tuple (x, mask)"),
    (lambda: fn.apply(fn.LastStep, (), (X, MASK)), ValueError, "expected one array"),
    (lambda: fn.apply(fn.MeanOverTime(), (), jnp.ones((2, 3, 1), jnp.int32)), TypeError, "floating-point"),
])
def test_errors(call, error, match):
    with pytest.raises(error) as info:
        call()
    assert match in str(info.value), str(info.value)

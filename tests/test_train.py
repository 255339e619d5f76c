import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typing import Any, Callable, NamedTuple

import fnnet as fn

X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
Y = jnp.array([[0], [1], [1], [0]], jnp.float32)
BCE = fn.losses.sigmoid_binary_cross_entropy
NET = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
SGD = fn.optim.sgd(0.1)


def xor_params(seed=0):
    return NET.init(jax.random.key(seed), (2,))


def blobs(n=60, seed=0):
    """Two Gaussian blobs: a small, separable binary problem."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.float32)[:, None]
    x = rng.normal(size=(n, 2)).astype(np.float32) + 2.5 * (2 * y - 1)
    return jnp.asarray(x), jnp.asarray(y)


def counting(model):
    """The same layer, with a counter of how many times its forward is traced."""
    calls = []

    def fwd(params, x, *, key=None):
        calls.append(1)
        return model.fwd(params, x, key=key)

    fwd.fnnet_layers = model.fwd.fnnet_layers
    return fn.Layer(model.init, fwd, model.bwd), calls


# --- duck typing ---------------------------------------------------------------------

class OptaxLike(NamedTuple):
    """A stand-in with optax's exact GradientTransformation signature (not an fnnet type)."""

    init: Callable[[Any], Any]
    update: Callable[..., Any]


def optax_style_sgd(lr):
    def init(params):
        return {"steps": jnp.zeros((), jnp.int32)}

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: -lr * g, updates), {"steps": state["steps"] + 1}

    return OptaxLike(init, update)


def test_train_step_and_fit_accept_any_optax_style_optimizer():
    p = xor_params()
    ours = fn.fit(NET, BCE, SGD, p, X, Y, epochs=50)
    theirs = fn.fit(NET, BCE, optax_style_sgd(0.1), p, X, Y, epochs=50)
    np.testing.assert_allclose(theirs[2]["loss"], ours[2]["loss"], rtol=1e-6)
    assert int(theirs[1]["steps"]) == 50
    step = fn.train_step(NET, BCE, optax_style_sgd(0.1))
    p1, s1, v = step(p, {"steps": jnp.zeros((), jnp.int32)}, X, Y)
    assert int(s1["steps"]) == 1 and v.shape == ()


# --- the fast path and caching -------------------------------------------------------

def test_fast_path_compiles_once_across_calls():
    model, calls = counting(NET)
    p = xor_params()
    fn.fit(model, BCE, SGD, p, X, Y, epochs=100)
    traced = len(calls)
    assert traced > 0
    for seed in (1, 2):
        _, _, h = fn.fit(model, BCE, SGD, xor_params(seed), X, Y, epochs=100)
    assert len(calls) == traced, "fit recompiled on a re-run with the same objects and shapes"
    assert h["stopped"] == "max epochs (100)" and h["loss"].shape == (100,)


def test_chunked_path_compiles_once_including_the_partial_last_chunk():
    model, calls = counting(NET)
    # 10 epochs in chunks of 4: chunks of 4, 4 and a last one of 2 (padded, skipped).
    kw = dict(epochs=10, chunk_size=4, metrics=("loss", "accuracy"))
    one_chunk, one_chunk_calls = counting(NET)       # traces of ONE compilation of a chunk
    fn.fit(one_chunk, BCE, SGD, xor_params(), X, Y, **dict(kw, epochs=4))
    _, _, h = fn.fit(model, BCE, SGD, xor_params(), X, Y, **kw)
    traced = len(calls)
    assert traced == len(one_chunk_calls) > 0, "a later or partial chunk recompiled"
    fn.fit(model, BCE, SGD, xor_params(1), X, Y, **kw)
    assert len(calls) == traced
    assert h["loss"].shape == h["accuracy"].shape == (10,)


def test_chunked_path_gives_the_fast_path_numbers():
    x, y = blobs()
    p = NET.init(jax.random.key(0), (2,))
    k = jax.random.key(5)
    fast = fn.fit(NET, BCE, SGD, p, x, y, epochs=30, batch_size=16, key=k)
    chunked = fn.fit(NET, BCE, SGD, p, x, y, epochs=30, batch_size=16, key=k, chunk_size=7,
                     metrics=("loss", "accuracy"))
    np.testing.assert_allclose(chunked[2]["loss"], fast[2]["loss"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), chunked[0], fast[0])


def test_minibatches_are_reshuffled_every_epoch_and_the_remainder_dropped():
    # Record which examples each step sees through a loss that ignores nothing.
    x = jnp.arange(10, dtype=jnp.float32)[:, None]
    y = jnp.zeros((10, 1), jnp.float32)
    ident = fn.serial(fn.Identity)
    epoch = fn.train.epoch_fn(ident, fn.losses.mean_squared_error, SGD, x, y, batch_size=4,
                              method="manual")
    seen, dropped = [], []
    for k in jax.random.split(jax.random.key(0), 3):
        k_perm, _ = jax.random.split(k)
        perm = np.asarray(jax.random.permutation(k_perm, 10))
        seen.append(perm[:8])
        dropped.append(set(perm[8:].tolist()))
        (_, _), value = epoch((((),), SGD.init(((),))), k)
        want = np.mean([np.mean(np.asarray(x)[b] ** 2) for b in perm[:8].reshape(2, 4)])
        np.testing.assert_allclose(value, want, rtol=1e-6)   # 2 full batches of 4, 2 dropped
    assert not np.array_equal(seen[0], seen[1])
    # The epoch values see only WHICH examples are dropped; they differ every epoch here,
    # so one permutation reused across epochs would fail the value check above.
    assert dropped[0] != dropped[1] != dropped[2] != dropped[0]


# --- metrics, validation, stopping ---------------------------------------------------

def test_validation_and_accuracy_are_recorded_per_epoch():
    x, y = blobs()
    xv, yv = blobs(20, seed=1)
    p = NET.init(jax.random.key(0), (2,))
    opt = fn.optim.adam(0.05)
    params, _, h = fn.fit(NET, BCE, opt, p, x, y, epochs=40, validation=(xv, yv),
                          metrics=("loss", "accuracy"))
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "stopped"}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert h[name].shape == (40,)
    final = fn.evaluate(NET, BCE, params, xv, yv)
    assert h["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-5)
    assert h["val_accuracy"][-1] == pytest.approx(final["accuracy"])
    assert h["accuracy"][-1] == pytest.approx(fn.evaluate(NET, BCE, params, x, y)["accuracy"])
    assert h["val_accuracy"][-1] == 1.0 and h["val_loss"][-1] < h["val_loss"][0]


def test_tol_stops_at_the_first_small_loss_change():
    p = xor_params()
    _, _, full = fn.fit(NET, BCE, SGD, p, X, Y, epochs=2000)
    params, _, h = fn.fit(NET, BCE, SGD, p, X, Y, epochs=2000, tol=1e-4)
    change = np.abs(np.diff(full["loss"]))
    first = int(np.argmax(change < 1e-4)) + 2          # epoch (1-based) whose change is small
    assert len(h["loss"]) == first < 2000
    np.testing.assert_allclose(h["loss"], full["loss"][:first], rtol=1e-6)
    assert h["stopped"] == f"converged at epoch {first} (|loss change| < tol=0.0001)"
    # the params returned are those after that epoch
    p_ref, _, _ = fn.fit(NET, BCE, SGD, p, X, Y, epochs=first)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, p_ref)


def test_patience_watches_validation_loss():
    x, y = blobs()
    # Validation labels flipped: val_loss gets worse while training improves.
    p = NET.init(jax.random.key(0), (2,))
    _, _, h = fn.fit(NET, BCE, fn.optim.adam(0.05), p, x, y, epochs=500,
                     validation=(x, 1 - y), patience=3)
    best = int(np.argmin(h["val_loss"])) + 1
    assert len(h["loss"]) == best + 3
    assert h["stopped"].startswith(f"patience: val_loss did not improve for 3 epochs; stopped at "
                                   f"epoch {best + 3} (best ")


def test_max_epochs_is_reported_on_the_chunked_path():
    _, _, h = fn.fit(NET, BCE, SGD, xor_params(), X, Y, epochs=5, tol=0.0)
    assert h["stopped"] == "max epochs (5)" and len(h["loss"]) == 5


def test_progress_bar_reports_epochs_and_metrics(capsys):
    fn.fit(NET, BCE, SGD, xor_params(), X, Y, epochs=50, verbose=True, chunk_size=10,
           metrics=("loss", "accuracy"))
    err = capsys.readouterr().err
    assert "50/50" in err and "loss=" in err and "accuracy=" in err


def test_quiet_by_default(capsys):
    fn.fit(NET, BCE, SGD, xor_params(), X, Y, epochs=50, metrics=("loss", "accuracy"))
    assert capsys.readouterr().err == ""


def test_missing_tqdm_means_no_bar(monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)   # import tqdm.auto -> ImportError
    _, _, h = fn.fit(NET, BCE, SGD, xor_params(), X, Y, epochs=20, verbose=True)
    assert len(h["loss"]) == 20 and capsys.readouterr().err == ""


@pytest.mark.parametrize("kwargs,match", [
    (dict(tol=-1.0), "fit: tol must be a number >= 0"),
    (dict(patience=0), "fit: patience must be a positive int"),
    (dict(metrics=("loss", "f1")), "fit: unknown metric 'f1'"),
    (dict(validation=(X,)), r"fit: validation must be a pair \(x_val, y_val\)"),
    (dict(chunk_size=0), "fit: chunk_size must be a positive int"),
])
def test_fit_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn.fit(NET, BCE, SGD, xor_params(), X, Y, epochs=5, **kwargs)


def test_debug_raises_with_the_layer_that_went_nonfinite():
    # A huge learning rate makes the logits overflow to inf within a few epochs.
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    loss = fn.losses.mean_squared_error
    p = net.init(jax.random.key(0), (2,))
    with pytest.raises(FloatingPointError, match=r"non-finite at epoch \d+.*\n.*find_nonfinite") as err:
        fn.fit(net, loss, fn.optim.sgd(1e3), p, X * 1e3, Y, epochs=100, debug=True)
    assert "is non-finite:" in str(err.value)   # the report found the culprit, not "all finite"


# --- train_step ------------------------------------------------------------------------

def test_train_step_traces_once_for_repeated_calls():
    import chex

    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    counted = fn.Layer(net.init, chex.assert_max_traces(net.fwd, n=1), net.bwd)
    step = fn.train_step(counted, BCE, SGD)
    p, s = net.init(jax.random.key(0), (2,)), SGD.init(net.init(jax.random.key(0), (2,)))
    for _ in range(5):  # a retrace would raise AssertionError from chex
        p, s, v = step(p, s, X, Y)
    p, s, v = step(p, s, X + 1.0, Y)  # new values, same shapes: still no retrace
    assert int(s[0].count) == 6


def test_train_step_is_value_and_grad_then_sgd():
    p = xor_params(3)
    value, grads = fn.value_and_grad(NET, BCE)(p, X, Y)
    p1, _, v1 = fn.train_step(NET, BCE, SGD)(p, SGD.init(p), X, Y)
    np.testing.assert_allclose(v1, value, rtol=1e-6)
    for new, old, g in zip(jax.tree.leaves(p1), jax.tree.leaves(p), jax.tree.leaves(grads)):
        np.testing.assert_allclose(new, old - 0.1 * g, rtol=1e-6, atol=1e-7)

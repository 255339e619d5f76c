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
        (_, _, _), value = epoch((((),), SGD.init(((),)), ()), k)   # (params, opt_state, state)
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
    assert set(h) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "stopped"}
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



def test_option_records_equal_the_flat_keywords():
    """fit(stopping=fn.Stopping(...), reporting=fn.Reporting(...)) is the same call as the
    flat keywords; passing an option both ways, or an unknown keyword, is an error."""
    p = xor_params()
    flat = fn.fit(NET, BCE, SGD, p, X, Y, epochs=40, tol=1e-3, metrics=("loss", "accuracy"))
    grouped = fn.fit(NET, BCE, SGD, p, X, Y, epochs=40, stopping=fn.Stopping(tol=1e-3),
                     reporting=fn.Reporting(metrics=("loss", "accuracy")))
    assert flat[2]["stopped"] == grouped[2]["stopped"]
    for name in ("loss", "accuracy", "epoch"):
        np.testing.assert_array_equal(flat[2][name], grouped[2][name])
    jax.tree.map(np.testing.assert_array_equal, flat[0], grouped[0])
    with pytest.raises(TypeError, match="tol given both as keyword"):
        fn.fit(NET, BCE, SGD, p, X, Y, epochs=5, tol=1e-3, stopping=fn.Stopping(patience=2))
    with pytest.raises(TypeError, match="stopping must be fn.Stopping"):
        fn.fit(NET, BCE, SGD, p, X, Y, epochs=5, stopping={"tol": 1e-3})
    with pytest.raises(TypeError, match="unexpected keyword argument 'tolerance'"):
        fn.fit(NET, BCE, SGD, p, X, Y, epochs=5, tolerance=1e-3)

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
    (dict(metrics=("loss", "f_one")), "fit: unknown metric 'f_one'"),
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


# --- compile once per architecture, data shape and optimizer kind ---------------------

def test_new_hyperparameters_epochs_and_rebuilt_models_reuse_the_compiled_run():
    loop = fn.train._compiled_loop
    p = xor_params()
    fn.fit(NET, BCE, fn.optim.adam(0.01), p, X, Y, epochs=20)
    size = loop._cache_size()
    for lr, b1, epochs in ((0.02, 0.8, 30), (0.05, 0.1, 17), (0.3, 0.5, 32)):   # one bucket (32)
        rebuilt = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
        _, s, h = fn.fit(rebuilt, BCE, fn.optim.adam(lr, b1=b1), p, X, Y, epochs=epochs)
        assert len(h["loss"]) == epochs and int(s[0].count) == epochs
        np.testing.assert_allclose(h["lr"], lr)
    assert loop._cache_size() == size, "fit recompiled for new hyperparameters or epochs"
    # another architecture, optimizer kind or bucket of epochs compiles anew (a width no
    # other test uses, so that the count does not depend on which tests ran before)
    other = fn.serial(fn.Dense(7), fn.Relu, fn.Dense(1))
    q = other.init(jax.random.key(0), (2,))
    fn.fit(other, BCE, fn.optim.adam(0.01), q, X, Y, epochs=20)
    size = loop._cache_size()
    fn.fit(other, BCE, fn.optim.sgd(0.1), q, X, Y, epochs=20)
    fn.fit(other, BCE, fn.optim.adam(0.01), q, X, Y, epochs=40)
    assert loop._cache_size() == size + 2


def test_new_learning_rate_gives_the_numbers_of_a_fresh_compile():
    p = xor_params()
    reused = fn.fit(NET, BCE, fn.optim.sgd(0.37), p, X, Y, epochs=20)[2]["loss"]
    fresh_net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    step = jax.jit(fn.train.epoch_fn(fresh_net, BCE, fn.optim.sgd(0.37), X, Y, batch_size=None,
                                     method="manual"))
    carry, want = (p, fn.optim.sgd(0.37).init(p), ()), []
    for _ in range(20):
        carry, v = step(carry, None)
        want.append(v)
    np.testing.assert_allclose(reused, want, rtol=1e-6)


def test_train_step_is_shared_by_equal_models_and_new_learning_rates():
    p = xor_params()
    fn.train_step(NET, BCE, fn.optim.sgd(0.1))(p, SGD.init(p), X, Y)
    size = fn.train._compiled_step._cache_size()
    rebuilt = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    p1, _, _ = fn.train_step(rebuilt, BCE, fn.optim.sgd(0.5))(p, SGD.init(p), X, Y)
    assert fn.train._compiled_step._cache_size() == size
    _, grads = fn.value_and_grad(NET, BCE)(p, X, Y)
    np.testing.assert_allclose(p1[0]["w"], p[0]["w"] - 0.5 * grads[0]["w"], rtol=1e-6)


def test_structure_compares_by_value_only_what_cannot_change():
    from fnnet.structure import keyed

    assert keyed(fn.Dense(3)) == keyed(fn.Dense(3)) != keyed(fn.Dense(4))
    assert keyed(fn.Dropout(0.5)) != keyed(fn.Dropout(0.25))
    w = jnp.ones(3)
    assert keyed(lambda x: x * w) != keyed(lambda x: x * jnp.ones(3))   # arrays: identity
    f = lambda x: x                                                     # noqa: E731
    assert keyed([f]) != keyed([f])                                     # lists: identity
    assert keyed(fn.optim.sgd(0.1)) == keyed(fn.optim.sgd(0.1)) != keyed(fn.optim.sgd(0.2))


# --- L2 regularization ------------------------------------------------------------------

def test_l2_adds_lam_sum_w2_and_its_handwritten_gradient_to_kernels():
    p = xor_params(2)
    reg = fn.l2(0.01)
    value, grads = fn.value_and_grad(NET, BCE)(p, X, Y)
    rv, rg = jax.jit(fn.value_and_grad(NET, BCE, regularizer=reg))(p, X, Y)
    av, ag = jax.jit(fn.value_and_grad(NET, BCE, regularizer=reg, method="autodiff"))(p, X, Y)
    kernels = float(jnp.sum(p[0]["w"] ** 2) + jnp.sum(p[2]["w"] ** 2))
    assert float(rv) == pytest.approx(float(value) + 0.01 * kernels, rel=1e-6)
    np.testing.assert_allclose(rg[0]["w"], grads[0]["w"] + 0.02 * p[0]["w"], rtol=1e-6)
    np.testing.assert_array_equal(rg[0]["b"], grads[0]["b"])               # biases spared
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), rg, ag)
    allg = jax.jit(lambda p: fn.value_and_grad(NET, BCE, regularizer=fn.l2(0.01, mask="all"))(
        p, X, Y)[1])(p)
    np.testing.assert_allclose(allg[2]["b"], grads[2]["b"] + 0.02 * p[2]["b"], rtol=1e-6)
    p1, _, v1 = fn.train_step(NET, BCE, SGD, regularizer=reg)(p, SGD.init(p), X, Y)
    assert float(v1) == pytest.approx(float(rv), rel=1e-6)
    np.testing.assert_allclose(p1[2]["w"], p[2]["w"] - 0.1 * rg[2]["w"], rtol=1e-6, atol=1e-7)
    h = fn.fit(NET, BCE, SGD, p, X, Y, epochs=3, regularizer=reg)[2]
    assert h["loss"][0] == pytest.approx(float(rv), rel=1e-6)


@pytest.mark.parametrize("make,match", [
    (lambda: fn.l2(-1.0), "l2: lam must be a finite number >= 0"),
    (lambda: fn.l2(1e-3, mask="biases"), "l2: mask must be 'kernels', 'all'"),
    (lambda: fn.value_and_grad(NET, BCE, regularizer=fn.l2(1e-3, mask=({"w": True},)))(
        xor_params(), X, Y), r"l2\(0.001\): the mask's tree differs from the params' tree"),
])
def test_l2_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- bad input (nothing silent) --------------------------------------------------------

def fit_call(**kw):
    args = dict(model=NET, loss=BCE, optimizer=SGD, params=xor_params(), x=X, y=Y)
    args.update(kw)
    extra = {k: args.pop(k) for k in list(args) if k not in
             ("model", "loss", "optimizer", "params", "x", "y")}
    return fn.fit(args["model"], args["loss"], args["optimizer"], args["params"], args["x"],
                  args["y"], **{"epochs": 2, **extra})


@pytest.mark.parametrize("call,err,match", [
    (lambda: fit_call(x=X[:0], y=Y[:0]), ValueError, "fit: the batch is empty"),
    (lambda: fn.train_step(NET, BCE, SGD)(xor_params(), SGD.init(xor_params()), X[:0], Y[:0]),
     ValueError, "train_step: the batch is empty"),
    (lambda: fn.evaluate(NET, BCE, xor_params(), X[:0], Y[:0]), ValueError,
     "evaluate: the batch is empty"),
    (lambda: fit_call(validation=(X[:0], Y[:0])), ValueError, "fit: the validation batch is empty"),
    (lambda: fit_call(validation=(X, Y[:3])), ValueError,
     r"fit: validation x has 4 examples .* but validation y has shape \(3, 1\)"),
    (lambda: fit_call(x=[[0.0, 1.0]] * 4), TypeError, r"fit: x is a Python list; pass an array"),
    (lambda: fit_call(y=[0.0, 1.0, 1.0, 0.0]), TypeError, r"fit: y is a Python list"),
    (lambda: fit_call(optimizer=fn.optim.sgd), TypeError, r"fit: .*fn.optim.sgd"),
    (lambda: fit_call(opt_state=fn.optim.sgd(0.1, momentum=0.9).init(
        fn.serial(fn.Dense(1)).init(jax.random.key(0), (2,)))), ValueError,
     "fit: opt_state does not belong to this optimizer"),
])
def test_bad_input_is_a_clear_error(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_numpy_integers_are_accepted_for_epochs_and_batch_size():
    _, _, h = fit_call(epochs=np.int64(3), batch_size=np.int32(2), key=jax.random.key(0))
    assert len(h["loss"]) == 3


# --- layer state (BatchNorm) ---------------------------------------------------------------

BN_NET = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Relu, fn.Dense(1))


def test_fit_and_train_step_carry_the_layer_state_and_inference_uses_it():
    x, y = blobs(16)
    p = BN_NET.init(jax.random.key(0), (2,))
    s0 = fn.init_state(BN_NET, p)
    key = jax.random.key(3)
    p_fit, o_fit, h, s_fit = fn.fit(BN_NET, BCE, SGD, p, x, y, epochs=3, key=key, state=s0)
    step = fn.train_step(BN_NET, BCE, SGD)
    pp, oo, ss = p, SGD.init(p), s0
    for e in range(3):     # fit's epoch e uses the key fold_in(key, e)
        pp, oo, v, ss = step(pp, oo, x, y, key=jax.random.fold_in(key, e), state=ss)
        assert float(v) == pytest.approx(float(h["loss"][e]), rel=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 (p_fit, s_fit), (pp, ss))
    # the running statistics: momentum 0.1 from (0, 1), unbiased variance of the batch
    assert not np.allclose(s_fit[1]["mean"], 0.0)
    logits = fn.predict(BN_NET, p_fit, x, state=s_fit)
    mean, var = s_fit[1]["mean"], s_fit[1]["var"]     # inference: the running statistics
    h1 = (x @ p_fit[0]["w"] + p_fit[0]["b"] - mean) / jnp.sqrt(var + 1e-5)
    h1 = jax.nn.relu(h1 * p_fit[1]["scale"] + p_fit[1]["bias"])
    np.testing.assert_allclose(logits, h1 @ p_fit[3]["w"] + p_fit[3]["b"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn.predict(BN_NET, p_fit, x, state=s_fit, batch_size=5), logits,
                               rtol=1e-6, atol=1e-7)
    ev = fn.evaluate(BN_NET, BCE, p_fit, x, y, state=s_fit)
    assert ev["loss"] == pytest.approx(float(BCE.fwd(logits, y)[0]), rel=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda p: fn.fit(BN_NET, BCE, SGD, p, X, Y, epochs=2, key=jax.random.key(0)),
     r"fit: serial\(.*BatchNorm.*\) has layer state .*pass state=fn.init_state"),
    (lambda p: fn.train_step(BN_NET, BCE, SGD)(p, SGD.init(p), X, Y, key=jax.random.key(0)),
     "train_step: .* has layer state"),
    (lambda p: fn.evaluate(BN_NET, BCE, p, X, Y), "evaluate: .* has layer state"),
    (lambda p: fn.predict(BN_NET, p, X), "predict: .* has layer state"),
    (lambda p: fn.sweep(BN_NET, BCE, SGD, X, Y, keys=[0, 1], epochs=2), "sweep: .* has layer state"),
])
def test_a_stateful_model_without_state_is_an_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(BN_NET.init(jax.random.key(0), (2,)))

"""The catalogue of bad inputs: nothing is silent.

One line per case: what is called, the error type it must raise, and a fragment of
its message (a plain substring). Every message names the layer or function, what
was expected, what came, and what to do; the fragment pins the part that tells
the user what to do or what was wrong. Below the errors: the inputs that must be
ACCEPTED, the warnings, NaN propagation, and the checkpoint cases.

Checkpoint corruption at random (hypothesis), every single bit flip, and kill -9
during saves are in tests/test_checkpoint.py; data parallelism's uneven batch is
in tests/test_sharding.py (it needs several devices, i.e. a subprocess).
"""

import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.checkpoint import CheckpointError

KEY = jax.random.key(0)
NET = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
P = NET.init(KEY, (2,))
X, Y = jnp.ones((4, 2)), jnp.ones((4, 1))
MSE, CE = fn.losses.mean_squared_error, fn.losses.softmax_cross_entropy
BCE = fn.losses.sigmoid_binary_cross_entropy
SGD = fn.optim.sgd(0.1)
CONV = fn.Conv2D(4, 3)
CONV_P = CONV.init(KEY, (8, 8, 3))
DROP = fn.serial(fn.Dense(3), fn.Dropout(0.5))
EMB = fn.Embedding(5, 3)

_TMP = tempfile.TemporaryDirectory(prefix="fnnet-bad-inputs-")
TMP = Path(_TMP.name)


def ckpt(kind: str) -> Path:
    """A file (or not) at TMP/<kind> that is not a loadable checkpoint."""
    path = TMP / kind
    if kind == "array.npy":
        np.save(path, np.ones(3))
    elif kind == "hand.npz":
        np.savez(path, w=np.ones(2))
    elif kind == "dir.npz":
        path.mkdir(exist_ok=True)
    elif kind in ("truncated.npz", "flipped.npz", "good.npz"):
        fn.save(path, {"w": jnp.arange(2000.0)})          # an array over 4 KiB
        data = bytearray(path.read_bytes())
        if kind == "truncated.npz":
            del data[len(data) // 2:]
        elif kind == "flipped.npz":                         # in the .npy header's shape
            data[data.index(b"'shape': (2000,)") + 11] ^= 0x01
        path.write_bytes(bytes(data))
    return path


def fit(*args, **kw):
    kw.setdefault("epochs", 2)
    return fn.fit(NET, MSE, SGD, P, *args, **kw)


def conv_fwd(x):
    return CONV.fwd(CONV_P, x)


# (id, call, error type, fragment of the message)
CASES = [
    # --- shapes, ranks, dtypes -----------------------------------------------------
    ("init: an int shape", lambda: NET.init(KEY, 2), TypeError, "write (2,) for 2 features"),
    ("init: a layer's own init, int shape", lambda: fn.Relu.init(KEY, 2), TypeError, "Relu: input_shape must be"),
    ("init: pooling, int shape", lambda: fn.MaxPool2D(2).init(KEY, 4), TypeError, "write (4,) for 4 features"),
    ("fwd: wrong feature count", lambda: fn.apply(NET, P, jnp.ones((4, 3))), ValueError, "Dense(3): input has 3 features"),
    ("fwd: no batch axis", lambda: fn.apply(NET, P, jnp.ones(2)), ValueError, "use x[None]"),
    ("fwd: integer input", lambda: fn.apply(NET, P, jnp.ones((4, 2), jnp.int32)), TypeError, "x.astype(jnp.float32)"),
    ("fwd: params of another model", lambda: fn.apply(NET, P[:2], X), ValueError, "tuple of 3 entries"),
    ("Conv2D: NCHW input", lambda: conv_fwd(jnp.ones((2, 3, 8, 8))), ValueError, "looks channels-first"),
    ("Conv2D: NCHW input, the fix", lambda: conv_fwd(jnp.ones((2, 3, 8, 8))), ValueError, "x.transpose(0, 2, 3, 1)"),
    ("Conv2D: one image, no batch", lambda: conv_fwd(jnp.ones((8, 8, 3))), ValueError, "For a single image use x[None]"),
    ("Conv2D: wrong channel count", lambda: conv_fwd(jnp.ones((2, 8, 8, 5))), ValueError, "input has 5 features"),
    ("pool: window over the image", lambda: fn.MaxPool2D(3).fwd((), jnp.ones((1, 2, 6, 1))), ValueError, "output would be empty"),
    ("LayerNorm: wrong width", lambda: fn.LayerNorm().fwd(fn.LayerNorm().init(KEY, (4,)), jnp.ones((2, 5))), ValueError, "expects 4"),
    ("Softmax: no class axis", lambda: fn.Softmax.fwd((), jnp.ones(4)), ValueError, "(batch, classes)"),
    ("Embedding: id out of range", lambda: EMB.fwd(EMB.init(KEY, ()), jnp.array([0, 7])), ValueError, "ids must be in [0, 5)"),
    ("Embedding: float ids", lambda: EMB.fwd(EMB.init(KEY, ()), jnp.array([0.0, 1.0])), TypeError, "ids.astype(jnp.int32)"),
    # --- constructors and hyperparameters --------------------------------------------
    ("serial: no layers", lambda: fn.serial(), ValueError, "needs at least one layer"),
    ("serial: constructor not called", lambda: fn.serial(fn.Dense), TypeError, "call it, e.g. fn.Dense(3)"),
    ("Dense: zero features", lambda: fn.Dense(0), ValueError, "features must be a positive int"),
    ("Conv2D: zero kernel", lambda: fn.Conv2D(3, 0), ValueError, "kernel_size must be a positive int"),
    ("MaxPool2D: negative stride", lambda: fn.MaxPool2D(2, -1), ValueError, "stride must be a positive int"),
    ("Dropout: rate above 1", lambda: fn.Dropout(1.5), ValueError, "must be in [0, 1)"),
    ("value_and_grad: unknown method", lambda: fn.value_and_grad(NET, MSE, method="foo"), ValueError, "expected one of ('manual', 'autodiff')"),
    ("sgd: negative learning rate", lambda: fn.optim.sgd(-0.1), ValueError, "learning_rate must be >= 0"),
    ("adam: b1 of 1.5", lambda: fn.optim.adam(1e-3, b1=1.5), ValueError, "b1 must be in [0, 1)"),
    # --- losses -------------------------------------------------------------------------
    ("loss: (n,) labels for (n, 1) outputs", lambda: MSE.fwd(jnp.ones((4, 1)), jnp.ones(4)), ValueError, "y[:, None]"),
    ("loss: integer logits", lambda: CE.fwd(jnp.ones((2, 3), jnp.int32), jnp.array([0, 1])), TypeError, "floating-point logits"),
    ("loss: empty batch", lambda: MSE.fwd(jnp.ones((0, 1)), jnp.ones((0, 1))), ValueError, "empty batch"),
    ("check_grads: labels of the wrong shape", lambda: fn.check_grads(NET, MSE, P, X, jnp.ones(4)), ValueError, "must match exactly"),
    # --- training -----------------------------------------------------------------------
    ("Dropout model trained without a key", lambda: fn.value_and_grad(DROP, MSE)(DROP.init(KEY, (2,)), X, jnp.ones((4, 3))), ValueError, "pass key=jax.random.key(0)"),
    ("fit: minibatches without a key", lambda: fit(X, Y, batch_size=2), ValueError, "pass key=jax.random.key(0)"),
    ("fit: batch_size 0", lambda: fit(X, Y, batch_size=0, key=KEY), ValueError, "batch_size must be an int in [1, 4]"),
    ("fit: batch_size over n", lambda: fit(X, Y, batch_size=5, key=KEY), ValueError, "batch_size must be an int in [1, 4]"),
    ("fit: negative epochs", lambda: fit(X, Y, epochs=-1), ValueError, "epochs must be a positive int"),
    ("fit: fractional epochs", lambda: fit(X, Y, epochs=2.5), ValueError, "epochs must be a positive int"),
    ("fit: x and y lengths differ", lambda: fit(X, jnp.ones((3, 1))), ValueError, "their first axes must match"),
    ("fit: validation not a pair", lambda: fit(X, Y, validation=jnp.ones((3, 2))), ValueError, "validation must be a pair"),
    ("train_step: mesh not a Mesh", lambda: fn.train_step(NET, MSE, SGD, mesh="cpu"), TypeError, "mesh must be a jax.sharding.Mesh"),
    # --- checkpoints --------------------------------------------------------------------
    ("load: a missing file", lambda: fn.load(TMP / "missing.npz"), CheckpointError, "(file not found)"),
    ("load: a directory", lambda: fn.load(ckpt("dir.npz")), CheckpointError, "is a directory, not a checkpoint"),
    ("load: a .npy file", lambda: fn.load(ckpt("array.npy")), CheckpointError, "is a .npy file"),
    ("load: a hand-made npz", lambda: fn.load(ckpt("hand.npz")), CheckpointError, "not an fnnet checkpoint (no '__fnnet_tree__' entry"),
    ("load: a truncated file", lambda: fn.load(ckpt("truncated.npz")), CheckpointError, "truncated or corrupted"),
    ("load: a flipped bit in a header", lambda: fn.load(ckpt("flipped.npz")), CheckpointError, "truncated or corrupted"),
    ("load: like of another shape", lambda: fn.load(ckpt("good.npz"), like={"w": jnp.ones(3)}), ValueError, "shape (2000,) in the file, (3,) in `like`"),
    ("save: an unsupported leaf", lambda: fn.save(TMP / "x.npz", {"s": "text"}), TypeError, "unsupported node str"),
    ("save: a string array", lambda: fn.save(TMP / "x.npz", {"s": np.array(["a"])}), TypeError, "unsupported dtype <U1"),
    # --- owned elsewhere, listed here so the catalogue is whole ---------------------
    ("labels out of range", lambda: CE.fwd(jnp.ones((2, 3)), jnp.array([0, 3])), ValueError, "integer labels must be class indices in [0, 3)"),
    ("negative labels", lambda: CE.fwd(jnp.ones((2, 3)), jnp.array([0, -1])), ValueError, "values {-1}"),
    ("sgd: infinite learning rate", lambda: fn.optim.sgd(float("inf")), ValueError, "learning_rate must be finite"),
    ("sgd: NaN learning rate", lambda: fn.optim.sgd(float("nan")), ValueError, "learning_rate must be finite"),
    ("sgd: a string learning rate", lambda: fn.optim.sgd("0.1"), TypeError, "must be a number or a schedule"),
    ("adam: eps = 0", lambda: fn.optim.adam(1e-3, eps=0.0), ValueError, "eps must be > 0"),
    ("optimizer state of another model", lambda: fn.optim.sgd(0.1, momentum=0.9).update(P, fn.optim.sgd(0.1, momentum=0.9).init(fn.serial(fn.Dense(1)).init(KEY, (2,))), P), ValueError, "call opt.init(params) for this model"),
    ("fit: optimizer state of another optimizer", lambda: fit(X, Y, opt_state=fn.optim.adam(0.1).init(P)), ValueError, "opt_state does not belong to this optimizer"),
    ("fit: x as a Python list", lambda: fit([[0.0, 1.0]] * 4, Y), TypeError, "x is a Python list"),
    ("fit: y as a Python list", lambda: fit(X, [[1.0]] * 4), TypeError, "y is a Python list"),
    ("fit: optimizer not called", lambda: fn.fit(NET, MSE, fn.optim.sgd, P, X, Y, epochs=2), TypeError, "call it with its hyperparameters"),
    ("train_step: optimizer not called", lambda: fn.train_step(NET, MSE, fn.optim.sgd), TypeError, "e.g. fn.optim.sgd(learning_rate)"),
    ("train_step: empty batch", lambda: fn.train_step(NET, MSE, SGD)(P, SGD.init(P), jnp.ones((0, 2)), jnp.ones((0, 1))), ValueError, "empty"),
    ("fit: empty training set", lambda: fit(jnp.ones((0, 2)), jnp.ones((0, 1))), ValueError, "empty"),
    ("value_and_grad: empty batch", lambda: fn.value_and_grad(NET, MSE)(P, jnp.ones((0, 2)), jnp.ones((0, 1))), ValueError, "empty batch"),
    ("fit: validation x of the wrong width", lambda: fit(X, Y, validation=(jnp.ones((3, 5)), jnp.ones((3, 1)))), ValueError, "validation"),
    ("fit: validation y of the wrong shape", lambda: fit(X, Y, validation=(jnp.ones((3, 2)), jnp.ones(3))), ValueError, "validation"),
]

# --- round 2: data checked on the host before compiling (fnnet.data_checks) -----------
CLS = fn.serial(fn.Dense(3))
CLS_P = CLS.init(KEY, (2,))
LABELS = jnp.array([0, 1, 2, 3])            # 3 is out of range for 3 classes
EMB_NET = fn.serial(fn.Embedding(5, 3), fn.Flatten, fn.Dense(1))
EMB_P = EMB_NET.init(KEY, (2,))
NAN_LR = fn.optim.sgd(lambda t: jnp.where(t >= 1, jnp.nan, 0.1))
CASES += [
    ("fit: an out-of-range label", lambda: fn.fit(CLS, CE, SGD, CLS_P, X, LABELS, epochs=2), ValueError, "holds 1 invalid target(s) for softmax_cross_entropy: integer labels must be class indices in [0, 3)"),
    ("fit: an out-of-range label, where", lambda: fn.fit(CLS, CE, SGD, CLS_P, X, LABELS, epochs=2), ValueError, "values {3}, the first in example 3"),
    ("fit: a validation label out of range", lambda: fn.fit(CLS, CE, SGD, CLS_P, X, LABELS % 3, epochs=2, validation=(X, LABELS)), ValueError, "fit: validation y holds 1 invalid target(s)"),
    ("evaluate: an out-of-range label", lambda: fn.evaluate(CLS, CE, CLS_P, X, LABELS), ValueError, "evaluate: y holds 1 invalid target(s)"),
    ("evaluate: a negative label", lambda: fn.evaluate(CLS, CE, CLS_P, X, -LABELS), ValueError, "values {-3, -2, -1}"),
    ("fit: a hinge target of 0", lambda: fn.fit(NET, fn.losses.hinge, SGD, P, X, jnp.array([[1.0], [0.0], [-1.0], [1.0]]), epochs=2), ValueError, "targets must be -1 or +1"),
    ("fit: an out-of-range id", lambda: fn.fit(EMB_NET, MSE, SGD, EMB_P, jnp.array([[0, 1]] * 3 + [[4, 5]]), Y, epochs=2), ValueError, "fit: x does not fit the model: Embedding(5, 3): ids must be in [0, 5)"),
    ("evaluate: an out-of-range id", lambda: fn.evaluate(EMB_NET, MSE, EMB_P, jnp.array([[0, -1]] * 4), Y), ValueError, "ids must be in [0, 5), got ids in [-1, 0]"),
    ("fit: NaN in x", lambda: fit(X.at[2, 1].set(jnp.nan), Y), ValueError, "x holds 1 non-finite value(s) (NaN), the first at index (2, 1)"),
    ("fit: inf in x", lambda: fit(X.at[0, 0].set(jnp.inf), Y), ValueError, "(inf)"),
    ("fit: NaN in a float target", lambda: fit(X, Y.at[3, 0].set(jnp.nan)), ValueError, "y holds 1 non-finite value(s)"),
    ("evaluate: NaN in x", lambda: fn.evaluate(NET, MSE, P, X.at[1, 1].set(jnp.nan), Y), ValueError, "evaluate: x holds 1 non-finite"),
    ("fit: a schedule returning NaN", lambda: fn.fit(NET, MSE, NAN_LR, P, X, Y, epochs=3), ValueError, "returns nan at step 1 (of the 3 steps of this run)"),
    ("fit: a schedule going negative", lambda: fn.fit(NET, MSE, fn.optim.sgd(lambda t: 0.1 - 0.1 * t), P, X, Y, epochs=3), ValueError, "Fix the schedule so it is finite and >= 0"),
]

XFAIL = {}  # name -> reason, for a case that is known not to hold yet (none today)
CASES.append(("init: a layer's own init, int shape (Dense)", lambda: fn.Dense(3).init(KEY, 2),
              TypeError, "write (2,) for 2 features"))


def _params(cases):
    for name, call, error, fragment in cases:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else []
        yield pytest.param(call, error, fragment, id=name, marks=marks)


@pytest.mark.parametrize("call,error,fragment", list(_params(CASES)))
def test_bad_input_is_a_clear_error(call, error, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error) as info:
            call()
    assert fragment in str(info.value), str(info.value)


def test_catalogue_ids_are_unique():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


# --- inputs that must be ACCEPTED ----------------------------------------------------

def test_numpy_integers_are_accepted_for_epochs_and_batch_size():
    _, _, history = fit(X, Y, epochs=np.int64(2), batch_size=np.int32(2), key=KEY)
    assert np.shape(history["loss"]) == (2,)


def test_shapes_as_lists_and_inference_on_an_empty_batch_are_fine():
    assert jax.tree.structure(NET.init(KEY, [2])) == jax.tree.structure(P)
    assert fn.apply(NET, P, jnp.ones((0, 2))).shape == (0, 1)   # inference: no mean taken


# --- warnings --------------------------------------------------------------------------

@pytest.mark.parametrize("last,loss", [(fn.Softmax, CE), (fn.Sigmoid, BCE)], ids=["softmax", "sigmoid"])
def test_probabilities_fed_to_a_logits_loss_warn(last, loss):
    model = fn.serial(fn.serial(fn.Dense(3), last))        # nested chains are followed
    with pytest.warns(UserWarning, match=rf"ends in {last.name} \(probabilities\).*Drop the final"):
        fn.value_and_grad(model, loss)
    with pytest.warns(UserWarning, match="applied twice"):
        fn.train_step(model, loss, SGD)(model.init(KEY, (2,)), SGD.init(model.init(KEY, (2,))),
                                        X, jnp.zeros((4, 3)) if last is fn.Sigmoid else jnp.array([0, 1, 2, 0]))


@pytest.mark.parametrize("model,loss", [(fn.serial(fn.Dense(3), fn.LogSoftmax), CE),
                                        (fn.serial(fn.Dense(3), fn.Softmax), MSE),
                                        (fn.serial(fn.Dense(3), fn.Relu), CE)],
                         ids=["logsoftmax-ce", "softmax-mse", "relu-ce"])
def test_no_warning_when_the_output_fits_the_loss(model, loss):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn.value_and_grad(model, loss)


# --- NaN propagates: a NaN input is never turned into a number ----------------------

ELEMENTWISE = [fn.Identity, fn.Relu, fn.LeakyRelu(), fn.LeakyRelu(0.0), fn.Sigmoid, fn.Tanh,
               fn.Gelu(), fn.Gelu(approximate=True), fn.Elu(), fn.Softplus, fn.Silu]


def test_every_activation_keeps_nan():
    x = jnp.array([[jnp.nan, -1.0, 0.0, 2.0], [0.5, -1.0, 0.0, 2.0]])
    for layer in ELEMENTWISE + [fn.Softmax, fn.LogSoftmax]:
        y = np.asarray(fn.apply(layer, (), x))
        nan_where = [[True, False, False, False], [False] * 4]
        if layer.name in ("Softmax", "LogSoftmax"):        # the whole row shares the NaN
            nan_where[0] = [True] * 4
        np.testing.assert_array_equal(np.isnan(y), nan_where, err_msg=layer.name)


def test_dropout_keeps_nan_in_dropped_units_too():
    x = jnp.full((2, 64), jnp.nan)
    y, mask = fn.Dropout(0.5).fwd((), x, key=KEY)
    assert not bool(mask.all()) and bool(jnp.isnan(y).all())   # dropped units stay NaN


@pytest.mark.parametrize("layer", [fn.Relu, fn.LeakyRelu(0.1)], ids=lambda l: l.name)
def test_relu_keeps_nan_and_matches_autodiff_at_the_kink(layer):
    x = jnp.array([[jnp.nan, 0.0, -0.0, -1.0, 2.0]])
    y, res = layer.fwd((), x)
    _, dx = layer.bwd(res, jnp.ones_like(x))
    _, pullback = jax.vjp(lambda x: layer.fwd((), x)[0], x)
    slope = np.float32(0.0 if layer is fn.Relu else 0.1)
    assert np.isnan(y[0, 0])
    np.testing.assert_array_equal(dx, [[slope, slope, slope, slope, 1.0]])  # left derivative at 0
    np.testing.assert_array_equal(dx, pullback(jnp.ones_like(x))[0])         # = jax.grad, bit for bit
    if layer is fn.Relu:
        np.testing.assert_array_equal(dx[0], jax.vmap(jax.grad(jax.nn.relu))(x[0]))


def test_pooling_keeps_nan():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1).at[0, 0, 1, 0].set(jnp.nan)
    for pool in (fn.MaxPool2D(2), fn.AvgPool2D(2)):
        y, res = pool.fwd((), x)
        np.testing.assert_array_equal(np.isnan(y).reshape(-1), [True, False, False, False])
    _, dx = pool.bwd(res, jnp.ones_like(y))                       # AvgPool: every entry gets 1/4
    np.testing.assert_array_equal(dx, jnp.full_like(x, 0.25))
    maxpool = fn.MaxPool2D(2)
    y, res = maxpool.fwd((), x)
    _, dx = maxpool.bwd(res, jnp.ones_like(y))
    _, pullback = jax.vjp(lambda x: maxpool.fwd((), x)[0], x)
    assert dx[0, 0, 1, 0] == 1.0                                  # the NaN is the window's max
    np.testing.assert_array_equal(dx, pullback(jnp.ones_like(y))[0])


def test_a_nan_input_reaches_the_loss_and_fit_refuses_it_before_compiling():
    x = X.at[1, 0].set(jnp.nan)
    value, grads = fn.value_and_grad(NET, MSE)(P, x, Y)
    assert np.isnan(value)      # before: Relu mapped it to 0 and the loss stayed finite
    assert "input x is non-finite" in str(fn.find_nonfinite(NET, MSE, P, x, Y))
    for debug in (False, True):  # the data are concrete: checked on the host, debug or not
        with pytest.raises(ValueError, match=r"x holds 1 non-finite value\(s\) \(NaN\), the first "
                                             r"at index \(1, 0\)"):
            fit(x, Y, epochs=1, debug=debug)


def test_invalid_label_under_jit_is_a_nan_loss_not_a_smaller_one():
    value = jax.jit(lambda z, y: CE.fwd(z, y)[0])(jnp.ones((2, 3)), jnp.array([0, 3]))
    assert np.isnan(value)


def test_adam_on_float16_params_takes_a_finite_first_step():
    p16 = {"w": jnp.ones(3, jnp.float16)}
    opt = fn.optim.adam(1e-3)
    updates, _ = opt.update({"w": jnp.full(3, 1e-3, jnp.float16)}, opt.init(p16), p16)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


# --- determinism ------------------------------------------------------------------------

def test_same_key_same_run_bit_for_bit():
    """Minibatch order and dropout masks come from the key alone: the same key gives the
    same params and history bit for bit; another key gives another run."""
    model = fn.serial(fn.Dense(3), fn.Dropout(0.5), fn.Dense(1))
    p0 = model.init(KEY, (2,))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 2)), jnp.float32)
    y = x[:, :1] * 2

    def run(key):
        return fn.fit(model, MSE, SGD, p0, x, y, epochs=3, batch_size=4, key=key)

    (pa, _, ha), (pb, _, hb), (pc, _, _) = run(KEY), run(KEY), run(jax.random.key(1))
    for a, b in zip(jax.tree.leaves((pa, ha["loss"])), jax.tree.leaves((pb, hb["loss"]))):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert not np.array_equal(pa[0]["w"], pc[0]["w"])


# --- round 2: documented behaviours -----------------------------------------------------

def test_masked_positions_may_hold_invalid_labels_in_fit():
    """Labels at masked positions are never read: the host check skips them too."""
    y = fn.losses.MaskedTarget(LABELS, LABELS < 3)
    _, _, history = fn.fit(CLS, fn.losses.masked(CE), SGD, CLS_P, X, y, epochs=2)
    assert np.all(np.isfinite(history["loss"]))


def test_batchnorm_state_follows_the_params_dtype():
    bn = fn.serial(fn.Dense(3), fn.BatchNorm())
    assert fn.init_state(bn, bn.init(KEY, (2,)))[1]["mean"].dtype == jnp.float32
    p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), bn.init(KEY, (2,)))
    assert fn.init_state(bn, p16)[1]["var"].dtype == jnp.float32      # at least float32
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), bn.init(KEY, (2,)))
        state = fn.init_state(bn, p64)
        assert {a.dtype for a in jax.tree.leaves(state)} == {jnp.dtype(jnp.float64)}


def _train_float32(opt):
    net = fn.serial(fn.Dense(8), fn.Relu, fn.Dropout(0.3), fn.Dense(3))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 32), jnp.int32)
    params = net.init(KEY, (4,))
    p, _, h = fn.fit(net, CE, opt, params, x, y, epochs=4, batch_size=8, key=KEY)
    return [np.asarray(a) for a in jax.tree.leaves((p, h["loss"]))]


@pytest.mark.parametrize("opt", [fn.optim.adam(1e-2),
                                 fn.optim.adamw(fn.optim.cosine_decay_schedule(1e-2, 16))],
                         ids=["adam", "adamw-cosine"])
def test_a_float32_model_trains_the_same_with_x64_on_and_off(opt):
    """Dropout masks from float32 uniforms, optimizer scalars in float32 (Adam's bias
    correction, a schedule): bit for bit the same run whether x64 is on or off."""
    off = _train_float32(opt)
    with jax.enable_x64(True):
        on = _train_float32(opt)
    for a, b in zip(off, on):
        assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()


def test_nchw_looking_init_shape_warns():
    with pytest.warns(UserWarning, match=r"init input_shape \(1, 8, 8\) .* looks channels-first"
                                         r" .* pass \(8, 8, 1\)"):
        fn.serial(fn.Conv2D(4, 3), fn.Flatten).init(KEY, (1, 8, 8))
    with warnings.catch_warnings():   # NHWC images and square feature maps do not warn
        warnings.simplefilter("error")
        fn.Conv2D(4, 3).init(KEY, (8, 8, 1))
        fn.Conv2D(4, 3).init(KEY, (4, 4, 64))


def test_layernorm_is_finite_for_rows_of_1e20_in_float32():
    ln = fn.LayerNorm()
    p = ln.init(KEY, (4,))
    x = jnp.array([[1e20, -1e20, 3e20, 0.0], [1e28, -1e28, 0.0, 0.0]], jnp.float32)
    y = fn.apply(ln, p, x)
    ref = (np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(-1, keepdims=True))
    ref /= ref.std(-1, keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    xs = jax.random.normal(KEY, (3, 4))   # ordinary rows: the textbook formula, bit for bit
    xc = xs - xs.mean(-1, keepdims=True)
    plain = xc * jax.lax.rsqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)
    assert np.asarray(fn.apply(ln, p, xs)).tobytes() == np.asarray(plain).tobytes()


def test_importing_the_clone_folder_says_what_happened(tmp_path):
    """A script run from the folder that holds the clone (a folder named fnnet) would
    import the clone as an empty namespace package; the clone's top-level __init__.py
    turns that into an ImportError that explains it."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "fnnet").symlink_to(root, target_is_directory=True)
    (tmp_path / "script.py").write_text("import fnnet as fn\nprint(fn.serial)\n")
    out = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "the folder of fnnet's git clone" in out.stderr and "not the package itself" in out.stderr
    assert f"pip install -e {tmp_path / 'fnnet'}" in out.stderr
    assert "has no attribute" not in out.stderr

"""Exact resume: a run split into several fit calls, with a checkpoint saved and loaded in
between, equals the uninterrupted run BIT FOR BIT (minibatches, dropout, Adam, layer state);
restore_best returns the best epoch's params and state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

BCE = fn.losses.sigmoid_binary_cross_entropy
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(22, 3)), jnp.float32)          # 22 % 8: a remainder dropped
Y = jnp.asarray(X[:, :1] * X[:, 1:2] > 0, jnp.float32)
KEY = jax.random.key(7)


def assert_bitwise(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
    for u, v in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def run_split(net, opt, p0, splits, tmp_path, state=None, **kw):
    """``fit`` in pieces ending at the epochs in ``splits``, through a checkpoint each time."""
    done, opt_state, losses = 0, None, []
    for i, end in enumerate(splits):
        extra = {} if state is None else {"state": state}
        out = fn.fit(net, BCE, opt, p0, X, Y, epochs=end, initial_epoch=done, key=KEY,
                     opt_state=opt_state, batch_size=8, **extra, **kw)
        p, opt_state, h = out[:3]
        assert list(h["epoch"]) == list(range(done + 1, end + 1))
        losses.append(h["loss"])
        tree = {"params": p, "opt_state": opt_state, "state": out[3] if state is not None else ()}
        path = tmp_path / f"ckpt{i}.npz"
        fn.save(path, tree)
        back = fn.load(path, like=tree)
        p0, opt_state, state = back["params"], back["opt_state"], back["state"] or None
        done = end
    return p0, opt_state, state, np.concatenate(losses)


def test_split_run_with_minibatches_dropout_and_layer_state_equals_one_run(tmp_path):
    net = fn.serial(fn.Dense(8), fn.BatchNorm(), fn.Relu, fn.Dropout(0.3), fn.Dense(1))
    opt = fn.optim.adam(0.01)
    p0 = net.init(jax.random.key(0), (3,))
    s0 = fn.init_state(net, p0)
    p, o, h, st = fn.fit(net, BCE, opt, p0, X, Y, epochs=9, key=KEY, batch_size=8, state=s0)
    p2, o2, st2, losses = run_split(net, opt, p0, [4, 5, 9], tmp_path, state=s0)
    assert_bitwise((p2, o2, st2), (p, o, st))      # the checkpoint restored the running stats
    np.testing.assert_array_equal(losses, h["loss"])
    assert not np.array_equal(np.asarray(st[1]["mean"]), np.asarray(s0[1]["mean"]))
    # and the split is not trivially equal: another key gives other numbers
    p3 = fn.fit(net, BCE, opt, p0, X, Y, epochs=9, key=jax.random.key(8), batch_size=8,
                state=s0)[0]
    assert not np.array_equal(np.asarray(p3[0]["w"]), np.asarray(p[0]["w"]))


def test_resume_arguments_are_checked():
    net = fn.serial(fn.Dense(2), fn.Relu, fn.Dense(1))
    p = net.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"fit: initial_epoch .* must be an int in \[0, epochs=5\)"):
        fn.fit(net, BCE, fn.optim.sgd(0.1), p, X, Y, epochs=5, initial_epoch=5)
    other = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))           # a checkpoint of another model
    foreign = fn.optim.adam(0.1).init(other.init(jax.random.key(0), (3,)))
    with pytest.raises(ValueError, match=r"fit: opt_state.* has shape \(3,\), but optimizer.init\(params\) gives "
                                         r"\(2,\).*another model"):
        fn.fit(net, BCE, fn.optim.adam(0.1), p, X, Y, epochs=5, opt_state=foreign,
               initial_epoch=2)


def test_restore_best_returns_the_best_epochs_params_and_state():
    net = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Relu, fn.Dense(1))
    opt = fn.optim.adam(0.05)
    p0 = net.init(jax.random.key(0), (3,))
    s0 = fn.init_state(net, p0)
    # validation labels flipped: val_loss is best early, then gets worse
    kw = dict(key=KEY, state=s0, validation=(X, 1 - Y), patience=3, restore_best=True)
    p, _, h, st = fn.fit(net, BCE, opt, p0, X, Y, epochs=16, **kw)
    best = int(np.argmin(h["val_loss"])) + 1
    assert h["best_epoch"] == best and len(h["loss"]) == best + 3 < 16
    # the same run stopped at the best epoch (same compiled program: the epochs are data)
    p_ref, _, _, st_ref = fn.fit(net, BCE, opt, p0, X, Y, epochs=best, **kw)
    assert_bitwise((p, st), (p_ref, st_ref))
    assert np.all(h["val_loss"][best:] > h["val_loss"][best - 1])   # later params differ

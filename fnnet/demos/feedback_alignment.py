"""Feedback alignment vs backprop on the 8x8 digits: accuracy curves and alignment angles.

Two MLPs 64-h-h-10 (tanh) with the same init are trained with Adam on the same
minibatches. Backprop sends the error back through ``W^T``; feedback alignment
(Lillicrap et al. 2016; :func:`fnnet.rules.feedback_alignment`) through fixed
random matrices ``B`` instead. After every epoch: test accuracy, and for the
feedback-alignment net the angle between each layer's update and the true
gradient (:func:`fnnet.rules.alignment_angles`, on a fixed training batch). The
last layer's angle is 0 (its error is the true one); the hidden layers start
near 90 degrees (a random direction) and drop as the forward weights come to
align with ``B`` ("the network learns to learn from B").

Run ``python examples/feedback_alignment.py --help``.
"""

from __future__ import annotations

import argparse
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common, digits
from fnnet.rules import alignment_angles, feedback_alignment

QUICK_EPOCHS = 3


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "feedback_alignment.py",
        description="Feedback alignment vs backprop on the bundled 8x8 digits: test accuracy "
                    "and the angle between each layer's update and the true gradient.")
    _common.add_training_flags(p, epochs=30, quick_epochs=QUICK_EPOCHS, lr=1e-3,
                               batch_size=32, hidden=64)
    return p


def make_models(hidden: int, key):
    """``(backprop, feedback alignment)``: the same MLP; its params fit both. The first
    layer needs no feedback matrix (nothing is sent below it)."""
    k2, k3 = jax.random.split(key)
    bp = fn.serial(fn.Dense(hidden), fn.Tanh, fn.Dense(hidden), fn.Tanh, fn.Dense(10))
    fa = fn.serial(fn.Dense(hidden), fn.Tanh, feedback_alignment(fn.Dense(hidden), k2),
                   fn.Tanh, feedback_alignment(fn.Dense(10), k3))
    return bp, fa


def epoch_fn(model, loss, opt, batch_size: int):
    """A jitted epoch: ``(params, opt_state, x, y, key) -> (params, opt_state, mean loss)``."""
    grad = fn.value_and_grad(model, loss)

    @jax.jit
    def epoch(params, opt_state, x, y, key):
        nb = x.shape[0] // batch_size
        idx = jax.random.permutation(key, x.shape[0])[: nb * batch_size].reshape(nb, batch_size)

        def one(carry, i):
            p, s = carry
            value, g = grad(p, x[i], y[i])
            updates, s = opt.update(g, s, p)
            return (fn.optim.apply_updates(p, updates), s), value

        (params, opt_state), values = jax.lax.scan(one, (params, opt_state), idx)
        return params, opt_state, jnp.mean(values)

    return epoch


def run(args) -> dict:
    (x_tr, y_tr), (x_te, y_te) = digits.load(args.test_size, args.seed)
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    k_init, k_fb, k_train = jax.random.split(jax.random.key(args.seed), 3)
    loss, opt = fn.losses.softmax_cross_entropy, fn.optim.adam(args.lr)
    bp, fa = make_models(args.hidden, k_fb)
    params0 = bp.init(k_init, (x_tr.shape[1],))
    x_tr, y_tr, x_te = jnp.asarray(x_tr), jnp.asarray(y_tr), jnp.asarray(x_te)
    probe = (x_tr[:256], y_tr[:256])
    batch = min(args.batch_size, len(x_tr))
    print(f"feedback alignment vs backprop on digits: {len(x_tr)} train / {len(x_te)} test, "
          f"MLP 64-{args.hidden}-{args.hidden}-10 (tanh), Adam lr={args.lr}, batch {batch}, "
          f"{epochs} epochs")
    out = {"epochs": epochs}
    for name, model in (("backprop", bp), ("feedback alignment", fa)):
        epoch = epoch_fn(model, loss, opt, batch)
        angles_fn = jax.jit(partial(alignment_angles, model, loss))
        accuracy = jax.jit(lambda p: jnp.mean(jnp.argmax(fn.apply(model, p, x_te), -1) == y_te))
        params, state = params0, opt.init(params0)
        hist = {"loss": [], "test_accuracy": [], "angles": []}
        for e in range(epochs):
            params, state, value = epoch(params, state, x_tr, y_tr, jax.random.fold_in(k_train, e))
            hist["loss"].append(float(value))
            hist["test_accuracy"].append(float(accuracy(params)))
            hist["angles"].append(np.asarray(angles_fn(params, *probe))[[0, 2, 4]])
        out[name] = {k: np.asarray(v) for k, v in hist.items()}
    return out


def report(result) -> None:
    bp, fa = result["backprop"], result["feedback alignment"]
    print(f"{'epoch':>5}  {'backprop acc':>12}  {'FA acc':>7}  FA angle to the gradient "
          f"(layers 1, 2, 3; degrees)")
    n = result["epochs"]
    for e in sorted({0, 1, 2, n // 4, n // 2, n - 1} & set(range(n))):
        a = fa["angles"][e]
        print(f"{e + 1:>5}  {100 * bp['test_accuracy'][e]:>11.2f}%  "
              f"{100 * fa['test_accuracy'][e]:>6.2f}%  {a[0]:6.1f} {a[1]:6.1f} {a[2]:6.1f}")
    print(f"test  accuracy {100 * fa['test_accuracy'][-1]:.2f} % (feedback alignment), "
          f"{100 * bp['test_accuracy'][-1]:.2f} % (backprop)")


def plot(result, path: str) -> str:
    from fnnet import plotting

    fig = plotting.new_figure(ncols=2)
    ax1, ax2 = fig.axes
    ep = np.arange(1, result["epochs"] + 1)
    for name in ("backprop", "feedback alignment"):
        ax1.plot(ep, 100 * result[name]["test_accuracy"], label=name)
    ax1.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits MLP")
    ax1.legend()
    angles = result["feedback alignment"]["angles"]
    for j, label in enumerate(("layer 1", "layer 2", "layer 3 (output)")):
        ax2.plot(ep, angles[:, j], label=label)
    ax2.axhline(90, color="gray", lw=0.5)
    ax2.set(xlabel="epoch", ylabel="degrees", ylim=(0, 95),
            title="feedback alignment: update vs gradient angle")
    ax2.legend()
    return plotting.save(fig, path)


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

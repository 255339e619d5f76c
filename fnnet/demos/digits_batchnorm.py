"""BatchNorm on the digits: the same deep MLP trained with and without it, same budget.

The model is ``depth`` blocks of ``Dense(hidden) [-> BatchNorm] -> Relu`` and a
``Dense(10)`` head, trained with plain SGD (momentum 0.9) on minibatches with the
same learning rate, epochs and seed; only the BatchNorm layers differ. BatchNorm's
running statistics are layer state, threaded through ``fn.fit(..., state=...)``
(state in, state out) and used for the test-set evaluation (inference mode).

Run ``python examples/digits_batchnorm.py --help``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import fnnet as fn
from fnnet.demos import _common
from fnnet.demos.digits import load

QUICK_EPOCHS = 2


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "digits_batchnorm.py",
        description="Train the same deep MLP on the bundled 8x8 digits with and without "
                    "BatchNorm (same budget: SGD with momentum 0.9 at --lr, same epochs and "
                    "seed) and compare test accuracy.")
    p.add_argument("--depth", type=_common.positive_int, default=6,
                   help="hidden blocks Dense -> [BatchNorm] -> Relu (default 6)")
    _common.add_training_flags(p, epochs=15, quick_epochs=QUICK_EPOCHS, lr=0.02,
                               batch_size=64, hidden=64)
    return p


def make_model(depth: int, hidden: int, batchnorm: bool):
    blocks = []
    for _ in range(depth):
        blocks.append(fn.Dense(hidden, w_init=fn.initializers.he_normal))
        if batchnorm:
            blocks.append(fn.BatchNorm())
        blocks.append(fn.Relu)
    return fn.serial(*blocks, fn.Dense(10))


def train_one(model, data, args, epochs: int) -> dict:
    (x_tr, y_tr), (x_te, y_te) = (_common.as_jnp(*d) for d in data)
    loss = fn.losses.softmax_cross_entropy
    k_init, k_fit = jax.random.split(jax.random.key(args.seed))
    params = model.init(k_init, (x_tr.shape[1],))
    state = fn.init_state(model, params)
    opt = fn.optim.sgd(args.lr, momentum=0.9)
    out = fn.fit(model, loss, opt, params, x_tr, y_tr, epochs=epochs, batch_size=args.batch_size,
                 key=k_fit, validation=(x_te, y_te), metrics=("loss", "accuracy"),
                 verbose=not args.no_progress, **({"state": state} if model.has_state else {}))
    params, history = out[0], out[2]
    state = out[3] if model.has_state else ()
    metrics = fn.evaluate(model, loss, params, x_te, y_te,
                          **({"state": state} if model.has_state else {}))
    return {"history": history, "test_accuracy": float(metrics["accuracy"]),
            "test_loss": float(metrics["loss"]), "state": state}


def run(args) -> dict:
    data = load(args.test_size, args.seed)
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    print(f"digits: {len(data[0][0])} train / {len(data[1][0])} test images; MLP 64-"
          f"{args.depth}x[{args.hidden}]-10 (ReLU), SGD lr={args.lr} momentum 0.9, "
          f"batch {args.batch_size}, {epochs} epochs, with and without BatchNorm")
    results = {}
    for name, bn in (("plain", False), ("batchnorm", True)):
        results[name] = train_one(make_model(args.depth, args.hidden, bn), data, args, epochs)
    return results


def report(results) -> None:
    for name, r in results.items():
        h = r["history"]
        print(f"{name:>9}: train loss {h['loss'][-1]:.4f}   test loss {r['test_loss']:.4f}   "
              f"test accuracy {100 * r['test_accuracy']:.2f} %")


def plot(results, path: str) -> str:
    from fnnet import plotting

    fig = plotting.new_figure(ncols=2)
    ax_loss, ax_acc = fig.axes
    plotting.plot_loss_curves({name: r["history"]["loss"] for name, r in results.items()},
                              ax=ax_loss, title="training loss")
    for name, r in results.items():
        acc = np.asarray(r["history"]["val_accuracy"])
        ax_acc.plot(np.arange(1, len(acc) + 1), 100 * acc, label=name)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("digits: deep MLP with and without BatchNorm")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend()
    return plotting.save(fig, path)


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

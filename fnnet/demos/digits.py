"""Digits: a softmax MLP on scikit-learn's bundled 8x8 handwritten digits.

1,797 images of 64 pixels (0..16, scaled to [0, 1]), 10 classes, a stratified
75/25 train/test split. The model is ``Dense(hidden) -> Relu -> Dense(10)``
(He init for the ReLU layer) trained with Adam on minibatches, every gradient by
hand; the loss is ``softmax_cross_entropy`` on the logits with integer labels.
Test accuracy: about 97-98 % with the defaults.

Run ``python examples/digits_mlp.py --help`` or ``fnnet train digits --help``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common

QUICK_EPOCHS = 3


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "digits_mlp.py",
        description="Train a softmax MLP on the bundled 8x8 digits (scikit-learn's load_digits, "
                    "no download) and print test metrics.")
    _common.add_training_flags(p, epochs=40, quick_epochs=QUICK_EPOCHS, lr=1e-3,
                               batch_size=32, hidden=128)
    return p


def load(test_size: float = 0.25, seed: int = 0):
    """``(x_train, y_train), (x_test, y_test)``: float32 pixels in [0, 1], int32 labels."""
    datasets = _common.require("sklearn.datasets", "the digits example")
    data = datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = _common.split(x, y, test_size, seed, "the digits example")
    return (x_tr, y_tr), (x_te, y_te)


def make_model(hidden: int):
    return fn.serial(fn.Dense(hidden, w_init=fn.initializers.he_normal), fn.Relu, fn.Dense(10))


def run(args) -> dict:
    """Train as ``args`` say; returns params, history and test metrics."""
    data = load(args.test_size, args.seed)
    (x_tr, _), (x_te, y_te) = data
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    model, loss = make_model(args.hidden), fn.losses.softmax_cross_entropy
    predict = jax.jit(lambda p, x: jnp.argmax(fn.apply(model, p, x), axis=-1))
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images of 8x8 pixels, 10 classes; "
          f"MLP 64-{args.hidden}-10 (ReLU), softmax cross-entropy, Adam lr={args.lr}, "
          f"batch {args.batch_size}, {epochs} epochs")
    result = _common.train_classifier(model, loss, data, args, epochs=epochs, predict=predict,
                                      desc="digits")
    pred = np.asarray(predict(result["params"], jnp.asarray(x_te)))
    result["per_class_accuracy"] = [float(np.mean(pred[y_te == c] == c)) for c in range(10)]
    return result


def report(result) -> None:
    _common.report_metrics(result)
    print("test accuracy per digit: " + "  ".join(
        f"{c}:{100 * a:.0f}%" for c, a in enumerate(result["per_class_accuracy"])))


def plot(result, path: str) -> str:
    """Save the loss and accuracy curves (train and test) to ``path``."""
    return _common.plot_training(result["history"], path, "digits MLP")


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

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
    model_selection = _common.require("sklearn.model_selection", "the digits example")
    data = datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    return (x_tr, y_tr), (x_te, y_te)


def make_model(hidden: int):
    return fn.serial(fn.Dense(hidden, w_init=fn.initializers.he_normal), fn.Relu, fn.Dense(10))


def run(args) -> dict:
    """Train as ``args`` say; returns params, history and test metrics."""
    (x_tr, y_tr), (x_te, y_te) = load(args.test_size, args.seed)
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    model, loss = make_model(args.hidden), fn.losses.softmax_cross_entropy
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params = model.init(k_init, (x_tr.shape[1],))
    predict = jax.jit(lambda p, x: jnp.argmax(fn.apply(model, p, x), axis=-1))
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images of 8x8 pixels, 10 classes; "
          f"MLP 64-{args.hidden}-10 (ReLU), softmax cross-entropy, Adam lr={args.lr}, "
          f"batch {args.batch_size}, {epochs} epochs")
    params, history = _common.train_with_eval(
        model, loss, _common.optimizer(args.lr), params, _common.as_jnp(x_tr, y_tr),
        _common.as_jnp(x_te, y_te), epochs=epochs, batch_size=args.batch_size, key=k_train,
        predict_labels=lambda p, x: np.asarray(predict(p, x)),
        progress=not args.no_progress, desc="digits")
    pred = np.asarray(predict(params, jnp.asarray(x_te)))
    per_class = [float(np.mean(pred[y_te == c] == c)) for c in range(10)]
    return {"params": params, "history": history, "model": model,
            "test_accuracy": float(history["test_accuracy"][-1]),
            "test_loss": float(history["test_loss"][-1]),
            "train_accuracy": float(history["train_accuracy"][-1]),
            "per_class_accuracy": per_class}


def report(result) -> None:
    h = result["history"]
    print(f"train loss {h['loss'][-1]:.4f}   train accuracy {100 * result['train_accuracy']:.2f} %")
    print(f"test  loss {result['test_loss']:.4f}   test  accuracy {100 * result['test_accuracy']:.2f} %"
          f"   ({h['seconds']:.1f} s)")
    print("test accuracy per digit: " + "  ".join(
        f"{c}:{100 * a:.0f}%" for c, a in enumerate(result["per_class_accuracy"])))


def plot(result, path: str) -> str:
    """Save the loss and accuracy curves (train and test) to ``path``."""
    return _common.plot_training(result["history"], path, "digits MLP")


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

"""Breast cancer: the XOR recipe's binary classifier on real data.

scikit-learn's bundled Wisconsin breast-cancer data (569 tumours, 30 features,
label 1 = benign, 0 = malignant), a stratified 75/25 train/test split, features
standardized with the TRAINING split's mean and standard deviation only (the
test split must not leak into the preprocessing). The model is
``Dense(hidden) -> Relu -> Dense(1)``: one logit, fed to
``sigmoid_binary_cross_entropy`` (the seed's sigmoid output + binary
cross-entropy, whose gradient at the logit is ``(sigmoid(z) - y) / n``), trained
with Adam on minibatches, every gradient by hand. Test accuracy: about 97-98 %.

Run ``python examples/breast_cancer.py --help`` or ``fnnet train breast-cancer --help``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common

QUICK_EPOCHS = 10


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "breast_cancer.py",
        description="Train an MLP with a sigmoid output and binary cross-entropy on the bundled "
                    "breast-cancer data (scikit-learn's load_breast_cancer, no download) and "
                    "print test metrics.")
    _common.add_training_flags(p, epochs=60, quick_epochs=QUICK_EPOCHS, lr=1e-3,
                               batch_size=32, hidden=16)
    return p


def standardize(x_train, x_test):
    """Scale both splits with the training split's statistics: ``(x - mean) / std``."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, (x_test - mean) / std


def load(test_size: float = 0.25, seed: int = 0):
    """``(x_train, y_train), (x_test, y_test)``: standardized float32 features, labels (n, 1)."""
    datasets = _common.require("sklearn.datasets", "the breast-cancer example")
    model_selection = _common.require("sklearn.model_selection", "the breast-cancer example")
    data = datasets.load_breast_cancer()
    x = data.data.astype(np.float64)
    y = data.target.astype(np.float32)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    x_tr, x_te = standardize(x_tr, x_te)
    return ((x_tr.astype(np.float32), y_tr[:, None]), (x_te.astype(np.float32), y_te[:, None]))


def make_model(hidden: int):
    return fn.serial(fn.Dense(hidden, w_init=fn.initializers.he_normal), fn.Relu, fn.Dense(1))


def run(args) -> dict:
    """Train as ``args`` say; returns params, history and test metrics."""
    (x_tr, y_tr), (x_te, y_te) = load(args.test_size, args.seed)
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    model, loss = make_model(args.hidden), fn.losses.sigmoid_binary_cross_entropy
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params = model.init(k_init, (x_tr.shape[1],))
    predict = jax.jit(lambda p, x: (fn.apply(model, p, x)[:, 0] > 0).astype(jnp.int32))
    print(f"breast cancer: {len(x_tr)} train / {len(x_te)} test tumours, 30 standardized "
          f"features; MLP 30-{args.hidden}-1 (ReLU), sigmoid + binary cross-entropy, "
          f"Adam lr={args.lr}, batch {args.batch_size}, {epochs} epochs")
    params, history = _common.train_with_eval(
        model, loss, _common.optimizer(args.lr), params, _common.as_jnp(x_tr, y_tr),
        _common.as_jnp(x_te, y_te), epochs=epochs, batch_size=args.batch_size, key=k_train,
        predict_labels=lambda p, x: np.asarray(predict(p, x)),
        progress=not args.no_progress, desc="breast cancer")
    pred = np.asarray(predict(params, jnp.asarray(x_te)))
    truth = y_te[:, 0].astype(np.int32)
    # "positive" = malignant (label 0), the class a screening test must not miss
    tp = int(np.sum((pred == 0) & (truth == 0)))
    fp = int(np.sum((pred == 0) & (truth == 1)))
    fn_ = int(np.sum((pred == 1) & (truth == 0)))
    return {"params": params, "history": history, "model": model,
            "test_accuracy": float(history["test_accuracy"][-1]),
            "test_loss": float(history["test_loss"][-1]),
            "train_accuracy": float(history["train_accuracy"][-1]),
            "malignant_precision": tp / max(tp + fp, 1), "malignant_recall": tp / max(tp + fn_, 1)}


def report(result) -> None:
    h = result["history"]
    print(f"train loss {h['loss'][-1]:.4f}   train accuracy {100 * result['train_accuracy']:.2f} %")
    print(f"test  loss {result['test_loss']:.4f}   test  accuracy {100 * result['test_accuracy']:.2f} %"
          f"   ({h['seconds']:.1f} s)")
    print(f"malignant: precision {100 * result['malignant_precision']:.1f} %, "
          f"recall {100 * result['malignant_recall']:.1f} %")


def plot(result, path: str) -> str:
    """Save the loss and accuracy curves (train and test) to ``path``."""
    return _common.plot_training(result["history"], path, "breast cancer MLP")


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

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
    data = datasets.load_breast_cancer()
    x = data.data.astype(np.float64)
    y = data.target.astype(np.float32)
    x_tr, x_te, y_tr, y_te = _common.split(x, y, test_size, seed, "the breast-cancer example")
    x_tr, x_te = standardize(x_tr, x_te)
    return ((x_tr.astype(np.float32), y_tr[:, None]), (x_te.astype(np.float32), y_te[:, None]))


def make_model(hidden: int):
    return fn.serial(fn.Dense(hidden, w_init=fn.initializers.he_normal), fn.Relu, fn.Dense(1))


def run(args) -> dict:
    """Train as ``args`` say; returns params, history and test metrics."""
    data = load(args.test_size, args.seed)
    (x_tr, _), (x_te, y_te) = data
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    model, loss = make_model(args.hidden), fn.losses.sigmoid_binary_cross_entropy
    predict = jax.jit(lambda p, x: (fn.apply(model, p, x)[:, 0] > 0).astype(jnp.int32))
    print(f"breast cancer: {len(x_tr)} train / {len(x_te)} test tumours, 30 standardized "
          f"features; MLP 30-{args.hidden}-1 (ReLU), sigmoid + binary cross-entropy, "
          f"Adam lr={args.lr}, batch {args.batch_size}, {epochs} epochs")
    result = _common.train_classifier(model, loss, data, args, epochs=epochs, predict=predict,
                                      desc="breast cancer")
    pred = np.asarray(predict(result["params"], jnp.asarray(x_te)))
    truth = y_te[:, 0].astype(np.int32)
    # "positive" = malignant (label 0), the class a screening test must not miss
    tp = int(np.sum((pred == 0) & (truth == 0)))
    fp = int(np.sum((pred == 0) & (truth == 1)))
    fn_ = int(np.sum((pred == 1) & (truth == 0)))
    result.update(malignant_precision=tp / max(tp + fp, 1), malignant_recall=tp / max(tp + fn_, 1))
    return result


def report(result) -> None:
    _common.report_metrics(result)
    print(f"malignant: precision {100 * result['malignant_precision']:.1f} %, "
          f"recall {100 * result['malignant_recall']:.1f} %")


def plot(result, path: str) -> str:
    """Save the loss and accuracy curves (train and test) to ``path``."""
    return _common.plot_training(result["history"], path, "breast cancer MLP")


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

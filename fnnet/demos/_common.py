"""Shared pieces of the demos: optional imports, argparse types, the epoch loop."""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn

EXTRA = 'pip install "fnnet[examples]"'


class MissingExtra(ImportError):
    """An optional dependency of the examples (scikit-learn, matplotlib, tqdm) is missing."""


class BadArgument(ValueError):
    """A flag's value that parses but cannot work with the data; ``demo_main`` turns it
    into argparse's usage error (exit code 2)."""


def require(module: str, what: str):
    """Import ``module`` or raise :class:`MissingExtra` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        pkg = {"sklearn": "scikit-learn"}.get(module.split(".")[0], module.split(".")[0])
        raise MissingExtra(f"{what} needs {pkg}, which is not installed: {EXTRA}") from err


def split(x, y, test_size: float, seed: int, what: str):
    """scikit-learn's stratified ``train_test_split``; a ``test_size`` it rejects (a split
    with fewer examples than classes, or an empty one) is a :class:`BadArgument`."""
    model_selection = require("sklearn.model_selection", what)
    try:
        return model_selection.train_test_split(x, y, test_size=test_size, random_state=seed,
                                                stratify=y)
    except ValueError as err:
        raise BadArgument(f"argument --test-size: {test_size} does not work here: {err}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def fraction(text: str) -> float:
    value = positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text}")
    return value


def plot_path(text: str) -> str:
    """An image file name whose folder exists (checked before any training starts)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"folder {folder!r} does not exist")
    if not os.path.splitext(text)[1]:
        raise argparse.ArgumentTypeError(f"{text!r} has no extension; use e.g. {text}.png")
    return text


def add_training_flags(p: argparse.ArgumentParser, *, epochs: int, quick_epochs: int,
                       lr: float, batch_size: int, hidden: int):
    """The flags every training demo shares."""
    p.add_argument("--epochs", type=positive_int, default=epochs,
                   help=f"passes over the training set (default {epochs})")
    p.add_argument("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default {lr})")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"minibatch size (default {batch_size})")
    p.add_argument("--hidden", type=positive_int, default=hidden,
                   help=f"hidden units of the MLP (default {hidden})")
    p.add_argument("--test-size", type=fraction, default=0.25,
                   help="fraction of the data held out for testing (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and shuffling")
    p.add_argument("--quick", action="store_true",
                   help=f"a fast smoke run ({quick_epochs} epochs), for tests")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plot", metavar="FILE.png", type=plot_path,
                   help="save loss and accuracy curves to FILE.png")


def optimizer(lr: float):
    """Adam (fnnet's hand-written one)."""
    return fn.optim.adam(lr)


def _fit_evaluates() -> bool:
    """Does ``fn.fit`` take ``validation=``, ``metrics=`` and ``verbose=`` (a progress bar)?"""
    params = inspect.signature(fn.fit).parameters
    return all(name in params for name in ("validation", "metrics", "verbose"))


def train_with_eval(model, loss, opt, params, train, test, *, epochs: int, batch_size: int,
                    key, predict_labels, progress: bool = True, desc: str = "training"):
    """Train with :func:`fnnet.fit`, evaluating on ``test`` after every epoch.

    When ``fit`` evaluates by itself (``validation=``, ``metrics=``, ``verbose=``) this
    is ONE compiled ``fit`` call with its progress bar. Otherwise ``fit`` runs one
    epoch at a time (compiled once, re-used; a fresh key per epoch reshuffles the
    minibatches) and the evaluation happens here, with a tqdm bar if installed.
    ``predict_labels(params, x) -> int array`` gives the predicted classes.

    Returns ``(params, history)`` with NumPy arrays ``loss`` (mean training loss
    of each epoch), ``test_loss``, ``train_accuracy``, ``test_accuracy``.
    """
    (x_tr, y_tr), (x_te, y_te) = train, test
    batch_size = min(batch_size, x_tr.shape[0])
    t0 = time.perf_counter()
    if _fit_evaluates():
        params, _, h = fn.fit(model, loss, opt, params, x_tr, y_tr, epochs=epochs,
                              batch_size=batch_size, key=key, validation=(x_te, y_te),
                              metrics=("loss", "accuracy"), verbose=progress)
        history = {"loss": h["loss"], "test_loss": h["val_loss"],
                   "train_accuracy": h["accuracy"], "test_accuracy": h["val_accuracy"]}
        history = {k: np.asarray(v, np.float64) for k, v in history.items()}
        history["seconds"] = time.perf_counter() - t0
        return params, history

    y_tr_labels, y_te_labels = (np.asarray(y).reshape(y.shape[0], -1)[:, 0] if y.ndim > 1
                                else np.asarray(y) for y in (y_tr, y_te))
    evaluate = jax.jit(lambda p, x, y: loss.fwd(fn.apply(model, p, x), y)[0])
    state = opt.init(params)
    hist = {k: [] for k in ("loss", "test_loss", "train_accuracy", "test_accuracy")}
    bar = _progress(epochs, desc) if progress else None
    for epoch in range(epochs):
        params, state, h = fn.fit(model, loss, opt, params, x_tr, y_tr, epochs=1,
                                  batch_size=batch_size, key=jax.random.fold_in(key, epoch),
                                  opt_state=state)
        hist["loss"].append(float(h["loss"][-1]))
        hist["test_loss"].append(float(evaluate(params, x_te, y_te)))
        hist["train_accuracy"].append(float(np.mean(predict_labels(params, x_tr) == y_tr_labels)))
        hist["test_accuracy"].append(float(np.mean(predict_labels(params, x_te) == y_te_labels)))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{hist['loss'][-1]:.4f}", test_acc=f"{hist['test_accuracy'][-1]:.3f}")
    if bar is not None:
        bar.close()
    history = {k: np.asarray(v) for k, v in hist.items()}
    history["seconds"] = time.perf_counter() - t0
    return params, history


def train_classifier(model, loss, data, args, *, epochs: int, predict, desc: str):
    """Init ``model`` and train it with Adam as ``args`` say; the classifier demos' run.

    ``data`` is ``((x_train, y_train), (x_test, y_test))`` as NumPy arrays, ``predict``
    a jitted ``(params, x) -> predicted classes``. Returns a dict: ``params``,
    ``history`` (as :func:`train_with_eval` gives it), ``model`` and the last epoch's
    ``test_accuracy``, ``test_loss``, ``train_accuracy``.
    """
    (x_tr, y_tr), (x_te, y_te) = data
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params = model.init(k_init, (x_tr.shape[1],))
    params, history = train_with_eval(
        model, loss, optimizer(args.lr), params, as_jnp(x_tr, y_tr), as_jnp(x_te, y_te),
        epochs=epochs, batch_size=args.batch_size, key=k_train,
        predict_labels=lambda p, x: np.asarray(predict(p, x)),
        progress=not args.no_progress, desc=desc)
    return {"params": params, "history": history, "model": model,
            "test_accuracy": float(history["test_accuracy"][-1]),
            "test_loss": float(history["test_loss"][-1]),
            "train_accuracy": float(history["train_accuracy"][-1])}


def report_metrics(result) -> None:
    """Print the final train and test loss and accuracy of :func:`train_classifier`."""
    h = result["history"]
    print(f"train loss {h['loss'][-1]:.4f}   train accuracy {100 * result['train_accuracy']:.2f} %")
    print(f"test  loss {result['test_loss']:.4f}   test  accuracy {100 * result['test_accuracy']:.2f} %"
          f"   ({h['seconds']:.1f} s)")


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # no progress bar, no problem
        return None
    return tqdm(total=total, desc=desc, unit="epoch", leave=True)


def plot_training(history, path: str, title: str):
    """Save loss curves (train/test) and accuracy curves side by side."""
    from fnnet import plotting

    fig = plotting.new_figure(ncols=2)
    ax_loss, ax_acc = fig.axes
    plotting.plot_loss_curves({"train": history["loss"], "test": history["test_loss"]},
                              ax=ax_loss, title=f"{title}: loss")
    epochs = np.arange(1, len(history["test_accuracy"]) + 1)
    ax_acc.plot(epochs, 100 * history["train_accuracy"], label="train")
    ax_acc.plot(epochs, 100 * history["test_accuracy"], label="test")
    final = 100 * history["test_accuracy"][-1]
    ax_acc.axhline(final, color="gray", ls=":", lw=1)
    ax_acc.set_ylim(max(0.0, min(100 * history["test_accuracy"].min(), 90.0) - 2), 100.5)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title(f"{title}: accuracy (final test {final:.1f} %)")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend()
    return plotting.save(fig, path)


def demo_main(build_parser, run, report, plot, argv=None, prog=None) -> int:
    """The shape every demo's ``main`` shares: parse, run, report, optionally plot."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.plot:  # before the training, not after it
        require("matplotlib", "--plot")
    try:
        result = run(args)
    except BadArgument as err:
        parser.error(str(err))
    report(result)
    if args.plot:
        print(f"saved {plot(result, args.plot)}")
    return 0


def as_jnp(*arrays):
    return tuple(jnp.asarray(a) for a in arrays)

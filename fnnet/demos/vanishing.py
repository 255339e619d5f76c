"""Vanishing gradients, seen layer by layer, and their fix.

Two deep MLPs on the bundled digits, same depth and width:

* **sigmoid**: ``depth`` x (Dense -> Sigmoid), weights ``N(0, std^2)`` with a small
  ``std`` (default 0.1). Each backward step multiplies the cotangent by
  ``sigmoid'(z) <= 1/4`` and by a small ``w^T``: the gradient shrinks
  geometrically on its way down, and the first layers get ~1e-8 of the last
  layer's gradient. They do not learn.
* **relu**: ``depth`` x (Dense -> Relu) with He init ``N(0, 2 / fan_in)``: ReLU's
  derivative is 0 or 1 and He's variance keeps the cotangent's scale from layer
  to layer, so every layer gets a gradient of the same order.

Both are checked with :func:`fnnet.diagnostics.gradient_diagnostics` on one batch
(per-layer gradient norms, the ``vanishing`` verdict, manual-vs-autodiff error per
layer), then trained with plain SGD (which, unlike Adam, does not rescale a
vanishing gradient) to show what the numbers mean for learning.

Run ``python examples/vanishing_gradients.py --help``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common
from fnnet.diagnostics import gradient_diagnostics

QUICK_EPOCHS = 2
QUICK_DEPTH = 6


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "vanishing_gradients.py",
        description="Compare per-layer gradient norms of a deep sigmoid MLP (small normal init) "
                    "and a deep ReLU MLP (He init) on the bundled digits, then train both with SGD.")
    p.add_argument("--depth", type=_common.positive_int, default=None,
                   help="hidden layers, each Dense + activation (default 10; 6 with --quick)")
    p.add_argument("--width", type=_common.positive_int, default=32, help="units per hidden layer")
    p.add_argument("--std", type=_common.positive_float, default=0.1,
                   help="std of the sigmoid network's normal init (default 0.1)")
    p.add_argument("--epochs", type=_common.positive_int, default=30,
                   help="SGD epochs for the training comparison (default 30)")
    p.add_argument("--lr", type=_common.positive_float, default=0.03,
                   help="SGD learning rate (default 0.03)")
    p.add_argument("--batch-size", type=_common.positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_EPOCHS} epochs and depth {QUICK_DEPTH} unless --depth is given, for tests")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plot", metavar="FILE.png", type=_common.plot_path,
                   help="save per-layer gradient norms, loss curves and manual-vs-autodiff errors")
    return p


def make_models(depth: int, width: int, std: float, classes: int = 10):
    """``{"sigmoid": model, "relu": model}``, both ending in a Dense(classes) logit layer."""
    sig, relu = [], []
    for _ in range(depth):
        sig += [fn.Dense(width, w_init=fn.initializers.normal(std)), fn.Sigmoid]
        relu += [fn.Dense(width, w_init=fn.initializers.he_normal), fn.Relu]
    return {f"sigmoid, N(0, {std:g}^2) init": fn.serial(*sig, fn.Dense(classes, w_init=fn.initializers.normal(std))),
            "relu, He init": fn.serial(*relu, fn.Dense(classes))}


def print_side_by_side(diags: dict) -> None:
    names = list(diags)
    rows = [d.param_layers for d in diags.values()]
    print("\nper-layer gradient norm ||dL/dparams|| at init, one batch:")
    print("  layer  " + "  ".join(f"{n:>28s}" for n in names))
    for i in range(len(rows[0])):
        print(f"  {rows[0][i].index:>5d}  " + "  ".join(f"{r[i].grad_norm:>28.3e}" for r in rows))
    for name, d in diags.items():
        verdict = "VANISHING" if d.vanishing else ("EXPLODING" if d.exploding else "healthy")
        print(f"  {name}: first/last layer ratio {d.depth_ratio:.1e} -> {verdict}; "
              f"manual vs jax.vjp worst error {np.nanmax(d.column('vjp_error')):.1e}")


def run(args) -> dict:
    (x_tr, y_tr), (x_te, y_te) = _digits(args.seed)
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    depth = args.depth or (QUICK_DEPTH if args.quick else 10)
    models = make_models(depth, args.width, args.std)
    loss = fn.losses.softmax_cross_entropy
    key = jax.random.key(args.seed)
    batch = slice(0, 256)
    print(f"vanishing gradients: {depth} hidden layers of {args.width} units on the digits; "
          f"SGD lr={args.lr}, batch {args.batch_size}, {epochs} epochs")
    diags, histories, accs = {}, {}, {}
    for name, model in models.items():
        params = model.init(key, (x_tr.shape[1],))
        diags[name] = gradient_diagnostics(model, loss, params, x_tr[batch], y_tr[batch],
                                           learning_rate=args.lr)
        predict = jax.jit(lambda p, x, model=model: jnp.argmax(fn.apply(model, p, x), axis=-1))
        params, hist = _common.train_with_eval(
            model, loss, fn.optim.sgd(args.lr), params, (x_tr, y_tr), (x_te, y_te),
            epochs=epochs, batch_size=args.batch_size, key=jax.random.fold_in(key, 1),
            predict_labels=lambda p, x, f=predict: np.asarray(f(p, x)),
            progress=not args.no_progress, desc=name.split(",")[0])
        histories[name], accs[name] = hist, float(hist["test_accuracy"][-1])
    return {"diagnostics": diags, "histories": histories, "test_accuracy": accs}


def _digits(seed: int):
    from fnnet.demos import digits

    (x_tr, y_tr), (x_te, y_te) = digits.load(0.25, seed)
    return _common.as_jnp(x_tr, y_tr), _common.as_jnp(x_te, y_te)


def report(result) -> None:
    print_side_by_side(result["diagnostics"])
    print("\nafter training with SGD:")
    for name, h in result["histories"].items():
        print(f"  {name:>28s}: train loss {h['loss'][0]:.3f} -> {h['loss'][-1]:.3f}, "
              f"test accuracy {100 * result['test_accuracy'][name]:.1f} %")


def plot(result, path: str) -> str:
    from fnnet import plotting

    fig = plotting.new_figure(ncols=3, width=5.2)
    ax_norm, ax_loss, ax_err = fig.axes
    for name, d in result["diagnostics"].items():
        plotting.plot_gradient_norms(d, ax=ax_norm, label=name,
                                     title="gradient norm per layer at init (dotted: 1e-3 x last)")
    plotting.plot_loss_curves({n: h["loss"] for n, h in result["histories"].items()}, ax=ax_loss,
                              title="training loss, plain SGD")
    name = next(iter(result["diagnostics"]))
    plotting.plot_vjp_errors(result["diagnostics"][name], ax=ax_err,
                             title=f"manual vs jax.vjp per layer ({name.split(',')[0]} net)")
    return plotting.save(fig, path)


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

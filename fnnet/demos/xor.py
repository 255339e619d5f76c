"""The XOR recipe: a 2-3-1 network trained with hand-written backprop.

The classic setup, by default exactly: 2 inputs, a hidden layer of 3 ReLU units,
1 sigmoid output unit (a logit fed to binary cross-entropy, whose gradient at the
logit is ``sigmoid(z) - y``), random normal weights (``N(0, 1)``, as
``np.random.randn`` in from-scratch tutorials) and zero biases, full-batch SGD
``w -= 0.1 * grad`` for 10,000 epochs.

An honest warning, measured (``--seeds 200``): this exact setup solves XOR for
only about half of random seeds (41 % of 200). With 3 ReLU units, a unit whose pre-activation
is negative on all four points is dead and never recovers, and the survivors
often cannot carve XOR. What fixes it (also measured, not tuned per seed): tanh
hidden units (``--activation tanh``, 87 % with 3 units) or more hidden units
(``--hidden 8``: ReLU 94 %, tanh 100 %).

Without ``--seed`` or ``--seeds``, ``python examples/xor.py`` is a short tour: the
recipe on seed 1, one it solves (seed 0 gets stuck at 75 %), then the honest
part, the solve rate over 100 seeds of this recipe and of the two reliable
variants, each 100 networks in one compiled, vmapped ``fn.sweep``.

Run ``python examples/xor.py --help`` (or ``fnnet xor --help``) for the flags.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos._common import plot_path

# the tour's single run: a seed the classic recipe solves (seeds 0, 2, 5-9, 11 do not; 1, 3,
# 4, 10 do -- measured with --seed N); the rate over 100 seeds follows it, honestly
DEMO_SEED = 1
TOUR_SEEDS = 100
# the reliable variants the tour measures after the classic recipe: (hidden, activation)
VARIANTS = ((8, "relu"), (8, "tanh"))

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)

ACTIVATIONS = {"relu": fn.Relu, "tanh": fn.Tanh, "sigmoid": fn.Sigmoid,
               "leaky_relu": fn.LeakyRelu(0.01)}
LOSSES = {"bce": "sigmoid_binary_cross_entropy", "mse": "mean_squared_error"}


def initializer(name: str):
    """``normal`` is N(0, 1) (the classic ``np.random.randn``); others from fnnet.initializers."""
    inits = fn.initializers
    table = {"normal": inits.normal(1.0), "uniform": inits.uniform(1.0),
             "glorot_uniform": inits.glorot_uniform, "glorot_normal": inits.glorot_normal,
             "he_uniform": inits.he_uniform, "he_normal": inits.he_normal,
             "lecun_normal": inits.lecun_normal}
    return table[name]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xor", description="Train a 2-H-1 network on XOR with hand-written backprop "
        "(defaults: the classic 2-3-1 ReLU/sigmoid, N(0,1) weights, zero biases, SGD 0.1, 10,000 epochs).")
    p.add_argument("--hidden", type=int, default=3, help="hidden units (default 3)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    p.add_argument("--init", choices=["normal", "uniform", "glorot_uniform", "glorot_normal",
                                      "he_uniform", "he_normal", "lecun_normal"], default="normal",
                   help="weight initializer (biases are always zero); default N(0, 1)")
    p.add_argument("--loss", choices=sorted(LOSSES), default="bce",
                   help="bce: sigmoid + binary cross-entropy on the logit; mse: MSE on sigmoid(logit)")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    p.add_argument("--epochs", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of a single run (without --seed or --seeds: the tour, seed "
                        f"{DEMO_SEED} then the solve rate over {TOUR_SEEDS} seeds)")
    p.add_argument("--seeds", type=int, default=0, metavar="N",
                   help="train N independently seeded networks in one compiled, vmapped run "
                        "and report how many solve XOR")
    p.add_argument("--plot", metavar="FILE.png", type=plot_path,
                   help="save the loss curve and decision boundary (needs matplotlib)")
    return p


def make_model(hidden: int, activation: str, init: str, loss: str):
    """The network (ending in a logit) and the loss on that logit."""
    w_init = initializer(init)
    layers = [fn.Dense(hidden, w_init=w_init), ACTIVATIONS[activation], fn.Dense(1, w_init=w_init)]
    if loss == "mse":  # MSE on the sigmoid output, as in the oldest tutorials
        return fn.serial(*layers, fn.Sigmoid), fn.losses.mean_squared_error
    return fn.serial(*layers), fn.losses.sigmoid_binary_cross_entropy


def probabilities(model, params, loss_name: str, x):
    out = fn.apply(model, params, x)
    return out if loss_name == "mse" else jax.nn.sigmoid(out)


def _check_args(parser, args):
    if args.hidden < 1:
        parser.error(f"--hidden must be >= 1, got {args.hidden}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    if args.seeds < 0:
        parser.error(f"--seeds must be >= 0, got {args.seeds}")


def run_one(args, model, loss, opt, hint: bool = True) -> dict:
    params0 = model.init(jax.random.key(args.seed), (2,))
    x, y = jnp.asarray(X), jnp.asarray(Y)
    t0 = time.perf_counter()
    params, _, history = fn.fit(model, loss, opt, params0, x, y, epochs=args.epochs)
    jax.block_until_ready(params)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()  # same call again: the compiled run is reused
    params, _, history = fn.fit(model, loss, opt, params0, x, y, epochs=args.epochs)
    jax.block_until_ready(params)
    run = time.perf_counter() - t0

    losses = history["loss"]
    every = max(1, args.epochs // 10)
    for epoch in [*range(0, args.epochs, every), args.epochs - 1]:
        print(f"epoch {epoch + 1:>6d}  loss {losses[epoch]:.6f}")
    probs = np.asarray(probabilities(model, params, args.loss, x)).ravel()
    preds = (probs > 0.5).astype(np.float32)
    acc = float(np.mean(preds == Y.ravel()))
    print("\n  x1 x2 | target  p(y=1)  predicted")
    for (a, b), t, p_, d in zip(X, Y.ravel(), probs, preds):
        print(f"  {a:.0f}  {b:.0f}  |   {t:.0f}     {p_:.4f}     {d:.0f}")
    print(f"\naccuracy {acc:.0%}  ({'solved' if acc == 1.0 else 'NOT solved'})")
    print(f"time: {args.epochs:,} epochs in {run * 1e3:.2f} ms compiled "
          f"(first call incl. compilation {first * 1e3:.0f} ms)")
    if acc < 1.0 and hint:
        print("This setup solves XOR for only about half of seeds; try --seeds 100 to see the "
              "rate, and --activation tanh or --hidden 8 for a reliable setup.")
    return {"params": params, "history": history, "accuracy": acc, "probs": probs}


def run_seeds(args, model, loss, opt, quiet: bool = False) -> dict:
    """Train ``args.seeds`` networks at once with :func:`fnnet.sweep` (one compiled, vmapped run)."""
    x, y = jnp.asarray(X), jnp.asarray(Y)
    keys = jax.random.split(jax.random.key(args.seed or 0), args.seeds)

    def train_all():
        params, _, history = fn.sweep(model, loss, opt, x, y, keys=keys, epochs=args.epochs)
        probs = jax.vmap(lambda p: probabilities(model, p, args.loss, x))(params)
        return jnp.all((probs > 0.5) == (y > 0.5), axis=(1, 2)), history["loss"][:, -1]

    t0 = time.perf_counter()
    solved, final = jax.block_until_ready(train_all())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()  # again: the compiled sweep is reused
    solved, final = jax.block_until_ready(train_all())
    run = time.perf_counter() - t0
    n = int(solved.sum())
    if quiet:
        return {"solved": np.asarray(solved), "seconds": run}
    print(f"{args.seeds} seeds, {args.epochs:,} epochs each: solved XOR for {n}/{args.seeds} "
          f"({n / args.seeds:.0%}); median final loss {float(np.median(final)):.4f}")
    print(f"time: {run * 1e3:.1f} ms for all seeds in one compiled vmapped run "
          f"(first call incl. compilation {first * 1e3:.0f} ms)")
    if args.hidden == 3 and args.activation == "relu":
        print("As measured, the classic 2-3-1 ReLU setup solves XOR for only about half of "
              "seeds. Reliable: --activation tanh --hidden 8 (100% of 200 seeds), or --hidden 8.")
    return {"solved": np.asarray(solved), "final_loss": np.asarray(final)}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    model, loss = make_model(args.hidden, args.activation, args.init, args.loss)
    opt = fn.optim.sgd(args.lr)
    print(f"XOR: 2-{args.hidden}-1, {args.activation} hidden, sigmoid output, {args.loss} loss, "
          f"{args.init} weights, zero biases, SGD lr={args.lr}, {args.epochs:,} epochs, full batch")
    if args.seeds:
        run_seeds(args, model, loss, opt)
        return 0
    tour = args.seed is None
    classic = (args.hidden, args.activation, args.init, args.loss, args.lr) == \
        (3, "relu", "normal", "bce", 0.1)
    if tour:
        args.seed = DEMO_SEED if classic else 0
        print(f"seed {args.seed}" + (" (one this recipe solves; seed 0 gets stuck at 75 %: the "
                                     "honest solve rate follows)" if classic else ""))
    result = run_one(args, model, loss, opt, hint=not tour)
    if args.plot:
        _plot(args, model, result)
    if tour:
        _rates(args, classic)
    return 0


def _rates(args, classic: bool):
    """The tour's honest part: the solve rate over TOUR_SEEDS seeds of this setup (and of
    the reliable variants, for the classic recipe), one fn.sweep each."""
    setups = [(args.hidden, args.activation, "this recipe")]
    if classic:
        setups += [(h, a, f"--hidden {h}" + (f" --activation {a}" if a != "relu" else ""))
                   for h, a in VARIANTS]
    print(f"\nHow often does it work? The same training over {TOUR_SEEDS} seeds, "
          f"{args.epochs:,} epochs each\n({TOUR_SEEDS} networks per compiled, vmapped fn.sweep):")
    total = 0.0
    for hidden, activation, label in setups:
        model, loss = make_model(hidden, activation, args.init, args.loss)
        sub = argparse.Namespace(**{**vars(args), "hidden": hidden, "activation": activation,
                                    "seeds": TOUR_SEEDS, "seed": 0})
        out = run_seeds(sub, model, loss, fn.optim.sgd(args.lr), quiet=True)
        total += out["seconds"]
        n = int(out["solved"].sum())
        print(f"  2-{hidden}-1 {activation:<4}  ({label}){'':<{30 - len(label)}} solved "
              f"{n:>3}/{TOUR_SEEDS}  ({n / TOUR_SEEDS:.0%})")
    print(f"  ({len(setups) * TOUR_SEEDS} networks trained in {total * 1e3:.0f} ms, compiled)")
    if classic:
        print("With 3 ReLU units, a unit that is negative on all four points gets no gradient "
              "and never\nrecovers; more units or tanh fix it. Reproduce: python examples/xor.py "
              "--seeds 100\n[--hidden 8] [--activation tanh]; a single seed: --seed N.")


def _plot(args, model, result):
    from fnnet import plotting

    plotting.plot_xor(model, result["params"], result["history"], X, Y, args.plot,
                      output="prob" if args.loss == "mse" else "logit")
    print(f"saved {args.plot}")


if __name__ == "__main__":
    raise SystemExit(main())

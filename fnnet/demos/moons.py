"""micrograd's demo, reproduced: two moons, MLP 2-16-16-1, hinge loss + L2, SGD 1.0 -> 0.1.

micrograd (github.com/karpathy/micrograd, ``demo.ipynb``) trains a scalar-autograd
MLP on two moons. Its setup, which this demo follows exactly by default:

* data: ``sklearn.datasets.make_moons(n_samples=100, noise=0.1)`` after
  ``np.random.seed(1337)`` (the same points as ``random_state=1337``), labels
  mapped to -1/+1;
* model: 2-16-16-1, ReLU hidden units, weights ``U(-1, 1)`` and biases 0
  (micrograd's ``Neuron``), 337 parameters, a linear output score;
* loss: the SVM max-margin loss ``mean(relu(1 - y * score))``
  (``fn.losses.hinge``) plus ``1e-4 * sum(p ** 2)`` over ALL parameters, biases
  included (``fn.l2(1e-4, mask="all")``);
* optimizer: full-batch SGD for 100 steps with ``lr = 1.0 - 0.9 * k / 100`` at
  step ``k`` (``fn.optim.linear_schedule(1.0, 0.1, 100)``);
* accuracy: ``sign(score) == y`` on the training points.

micrograd's notebook prints step 0 loss 0.8958, accuracy 50 %, and step 99 loss
0.0110, accuracy 100 %. Weights are drawn from a different random stream here
(JAX's, not Python's ``random``), so the curve differs in detail; run with
``--seeds 20`` to see how it holds over initialisations.

Run ``python examples/moons.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common
from fnnet.regularizers import l2

DATA_SEED = 1337  # micrograd's np.random.seed(1337)
STEPS, QUICK_STEPS = 100, 30
L2 = 1e-4


def load(n: int = 100, noise: float = 0.1, seed: int = DATA_SEED):
    """Two moons as float32 ``x (n, 2)`` and -1/+1 labels ``y (n, 1)``."""
    datasets = _common.require("sklearn.datasets", "the moons example")
    x, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    return x.astype(np.float32), (2 * y - 1).astype(np.float32)[:, None]


def make_model(hidden: int = 16):
    """micrograd's ``MLP(2, [16, 16, 1])``: U(-1, 1) weights, zero biases, ReLU hidden."""
    w = fn.initializers.uniform(1.0)
    return fn.serial(fn.Dense(hidden, w_init=w), fn.Relu, fn.Dense(hidden, w_init=w), fn.Relu,
                     fn.Dense(1, w_init=w))


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "moons",
        description="micrograd's demo: two moons (100 points, noise 0.1), MLP 2-16-16-1, hinge "
                    "loss + 1e-4 L2, SGD with lr falling linearly 1.0 -> 0.1 over 100 steps.")
    p.add_argument("--steps", type=_common.positive_int, default=STEPS,
                   help=f"full-batch SGD steps (default {STEPS}, as micrograd)")
    p.add_argument("--hidden", type=_common.positive_int, default=16,
                   help="units per hidden layer (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights (the data is fixed)")
    p.add_argument("--seeds", type=_common.positive_int, default=1, metavar="N",
                   help="train N initialisations (seeds seed..seed+N-1) and report each accuracy")
    p.add_argument("--quick", action="store_true", help=f"a fast smoke run ({QUICK_STEPS} steps)")
    p.add_argument("--plot", metavar="FILE.png", type=_common.plot_path,
                   help="save the loss curve and the decision boundary (needs matplotlib)")
    return p


def run(args) -> dict:
    x, y = load()
    x, y = jnp.asarray(x), jnp.asarray(y)
    steps = QUICK_STEPS if args.quick else args.steps
    model, loss = make_model(args.hidden), fn.losses.hinge
    # lr(k) = 1.0 - 0.9 k / 100 at step k = 0..99: micrograd's schedule
    opt = fn.optim.sgd(fn.optim.linear_schedule(1.0, 0.1, STEPS))
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        params = model.init(jax.random.key(seed), (2,))
        t0 = time.perf_counter()
        params, _, history = fn.fit(model, loss, opt, params, x, y, epochs=steps,
                                    metrics=("loss", "accuracy"), regularizer=l2(L2, mask="all"))
        jax.block_until_ready(params)
        runs.append({"seed": seed, "params": params, "history": history,
                     # fit's "accuracy": sign(score) == y after the last step, as micrograd
                     "accuracy": float(history["accuracy"][-1]),
                     "seconds": time.perf_counter() - t0})
    n_params = sum(a.size for a in jax.tree.leaves(runs[0]["params"]))
    return {"model": model, "x": np.asarray(x), "y": np.asarray(y), "steps": steps,
            "n_params": n_params, "hidden": args.hidden, "runs": runs, **runs[0]}


def report(result) -> None:
    h = result["history"]
    print(f"two moons: {len(result['x'])} points, MLP 2-{result['hidden']}-{result['hidden']}-1 "
          f"({result['n_params']} params), hinge + {L2:g} L2, SGD lr 1.0 -> 0.1, "
          f"{result['steps']} steps")
    print("(loss: the full-batch loss at each step, before its update; accuracy: after it)")
    every = max(1, result["steps"] // 10)
    for k in [*range(0, result["steps"], every), result["steps"] - 1]:
        print(f"step {k:3d} loss {h['loss'][k]:.4f}, accuracy {100 * h['accuracy'][k]:.1f}%")
    print(f"final training accuracy {100 * result['accuracy']:.1f} %  (micrograd: 100 %)   "
          f"seed {result['seed']}, {result['seconds'] * 1e3:.0f} ms incl. compilation")
    if len(result["runs"]) > 1:
        accs = np.array([r["accuracy"] for r in result["runs"]])
        print(f"{len(accs)} seeds: accuracy min {100 * accs.min():.0f} %, median "
              f"{100 * np.median(accs):.0f} %, 100 % for {int(np.sum(accs == 1.0))}/{len(accs)}")


def plot(result, path: str) -> str:
    from fnnet import plotting

    model, params = result["model"], result["params"]
    fig = plotting.new_figure(ncols=2)
    ax_loss, ax_db = fig.axes
    plotting.plot_loss_curves({"hinge + L2": result["history"]["loss"]}, ax=ax_loss,
                              title="loss (full batch)", xlabel="step")
    plotting.plot_decision_boundary(
        lambda pts: jax.nn.sigmoid(4 * fn.apply(model, params, jnp.asarray(pts))),
        result["x"], (result["y"] > 0).astype(int), ax=ax_db,
        title=f"decision boundary (accuracy {100 * result['accuracy']:.0f} %)")
    return plotting.save(fig, path)


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

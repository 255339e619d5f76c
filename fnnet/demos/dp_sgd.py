"""DP-SGD on breast cancer: test accuracy against the noise multiplier.

The breast-cancer MLP (30-16-1, ReLU, sigmoid cross-entropy; scikit-learn's
bundled data, standardised, stratified 75/25 split) is trained once per noise
multiplier with :func:`fnnet.dp.train_step`: every example's gradient clipped to
``--clip`` (computed from per-example norms, never per-example gradients), then
Gaussian noise ``sigma * clip`` added to the sum. ``sigma = 0`` clips only; a
non-private run (ordinary ``fn.train_step``) is the baseline. Same init, same
minibatch order, same optimiser for every run.

No privacy accounting: the (epsilon, delta) of a run depends on the sampling
rate, the number of steps and sigma and needs an accountant (TensorFlow Privacy,
Opacus); minibatches here are shuffled without replacement, not Poisson-sampled.

Run ``python examples/dp_sgd.py --help``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common, breast_cancer

QUICK_EPOCHS = 3  # --quick: 3 epochs, sigma 1 only, no non-private baseline
SIGMAS = (0.0, 0.5, 1.0, 2.0, 4.0)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "dp_sgd.py",
        description="DP-SGD (per-example clipping + Gaussian noise) on breast cancer: test "
                    "accuracy against the noise multiplier. No privacy accounting.")
    _common.add_training_flags(p, epochs=30, quick_epochs=QUICK_EPOCHS, lr=0.01, batch_size=64,
                               hidden=16)
    p.add_argument("--clip", type=_common.positive_float, default=1.0,
                   help="per-example gradient norm bound C (default 1.0)")
    p.add_argument("--sigmas", type=_common.positive_float, nargs="*", default=None,
                   help=f"noise multipliers to try (default {' '.join(map(str, SIGMAS))}; "
                        f"0 is always included)")
    return p


def train(step, params, opt, data, *, epochs, batch_size, key, predict):
    """Minibatch training with ``step(params, opt_state, x, y, key) -> (params, opt_state, value)``;
    returns the params and the test accuracy after every epoch."""
    (x_tr, y_tr), (x_te, y_te) = data
    n, bs = len(x_tr), min(batch_size, len(x_tr))
    state, accs = opt.init(params), []
    for epoch in range(epochs):
        k_perm, k_steps = jax.random.split(jax.random.fold_in(key, epoch))
        order = np.asarray(jax.random.permutation(k_perm, n))
        for b in range(n // bs):
            idx = order[b * bs:(b + 1) * bs]
            params, state, _ = step(params, state, x_tr[idx], y_tr[idx],
                                    jax.random.fold_in(k_steps, b))
        accs.append(float(np.mean(np.asarray(predict(params, x_te)) == y_te[:, 0])))
    return params, np.asarray(accs)


def run(args) -> dict:
    data = breast_cancer.load(args.test_size, args.seed)
    (x_tr, y_tr), (x_te, y_te) = data
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    sigmas = (1.0,) if args.quick else tuple(sorted({0.0, *(args.sigmas or SIGMAS)}))
    model, loss = breast_cancer.make_model(args.hidden), fn.losses.sigmoid_binary_cross_entropy
    opt = fn.optim.adam(args.lr)
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params0 = model.init(k_init, (x_tr.shape[1],))
    predict = jax.jit(lambda p, x: (fn.apply(model, p, x)[:, 0] > 0).astype(jnp.float32))
    print(f"DP-SGD on breast cancer: {len(x_tr)} train / {len(x_te)} test, MLP 30-{args.hidden}-1, "
          f"Adam lr={args.lr}, batch {args.batch_size}, {epochs} epochs, clip C={args.clip}")
    runs = {}
    if not args.quick:  # the quick smoke run skips the baseline
        plain = fn.train_step(model, loss, opt)
        runs["non-private"] = train(lambda p, s, x, y, k: plain(p, s, x, y), params0, opt, data,
                                    epochs=epochs, batch_size=args.batch_size, key=k_train,
                                    predict=predict)[1]
    for sigma in sigmas:
        step = fn.dp.train_step(model, loss, opt, l2_norm_clip=args.clip, noise_multiplier=sigma)
        runs[sigma] = train(lambda p, s, x, y, k: step(p, s, x, y, key=k), params0,
                            opt, data, epochs=epochs, batch_size=args.batch_size, key=k_train,
                            predict=predict)[1]
    return {"runs": runs, "sigmas": sigmas, "epochs": epochs, "clip": args.clip,
            "batch_size": min(args.batch_size, len(x_tr))}


def report(result) -> None:
    print(f"{'noise multiplier':>18}  {'noise std / batch':>17}  test accuracy (last epoch)")
    for name, accs in result["runs"].items():
        label = name if isinstance(name, str) else f"{name:g}"
        std = "-" if isinstance(name, str) else f"{name * result['clip'] / result['batch_size']:.4f}"
        print(f"{label:>18}  {std:>17}  {100 * accs[-1]:.2f} %")
    print("(no privacy accounting: epsilon is not computed)")


def plot(result, path: str) -> str:
    from fnnet import plotting

    fig = plotting.new_figure(width=6.0)
    ax = fig.axes[0]
    for name, accs in result["runs"].items():
        label = name if isinstance(name, str) else f"sigma = {name:g}"
        ax.plot(np.arange(1, len(accs) + 1), 100 * accs, label=label,
                ls="--" if isinstance(name, str) else "-")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="DP-SGD on breast cancer")
    ax.legend()
    return plotting.save(fig, path)


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

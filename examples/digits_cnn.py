"""A small CNN on scikit-learn's bundled 8x8 digits (no download), every gradient by hand.

    Conv2D(16, 3) -> Relu -> MaxPool2D(2) -> Conv2D(32, 3) -> Relu -> MaxPool2D(2)
        -> Flatten -> Dense(10)                     (8x8x1 -> 4x4x16 -> 2x2x32 -> 10)

Images are NHWC ``(n, 8, 8, 1)`` scaled to [0, 1]; a stratified 75/25 train/test
split (fixed seed). Training is ``fn.fit`` on minibatches with Adam, using the
hand-written backward of every layer; afterwards the script prints the test
accuracy, ``fn.check_grads`` for the model on a small batch (manual vs
``jax.grad`` vs float64 finite differences) and the wall time.

    python examples/digits_cnn.py                 # the CNN, ~98 % test accuracy
    python examples/digits_cnn.py --model mlp     # MLP with LayerNorm + Dropout
    python examples/digits_cnn.py --quick         # a few epochs: a smoke test
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos._common import positive_float, positive_int
from fnnet.demos.digits import load

he = fn.initializers.he_normal


def make_model(kind: str) -> fn.Layer:
    if kind == "cnn":
        return fn.serial(
            fn.Conv2D(16, 3, w_init=he), fn.Relu, fn.MaxPool2D(2),
            fn.Conv2D(32, 3, w_init=he), fn.Relu, fn.MaxPool2D(2),
            fn.Flatten, fn.Dense(10))
    return fn.serial(fn.Flatten, fn.Dense(128, w_init=he), fn.LayerNorm(), fn.Relu,
                     fn.Dropout(0.2), fn.Dense(10))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=3e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 epochs, for the tests")
    args = p.parse_args(argv)
    epochs = 2 if args.quick else args.epochs

    start = time.perf_counter()
    (x_tr, y_tr), (x_te, y_te) = load(test_size=0.25, seed=args.seed)
    x_tr, x_te = (jnp.asarray(x.reshape(-1, 8, 8, 1)) for x in (x_tr, x_te))  # NHWC
    y_tr, y_te = jnp.asarray(y_tr), jnp.asarray(y_te)

    model, loss = make_model(args.model), fn.losses.softmax_cross_entropy
    k_init, k_fit, k_check = jax.random.split(jax.random.key(args.seed), 3)
    params = model.init(k_init, x_tr.shape[1:])
    n_params = sum(a.size for a in jax.tree.leaves(params))
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images (n, 8, 8, 1); "
          f"{args.model} with {n_params} params: {model.name}")

    opt = fn.optim.adam(args.lr)
    batch_size = min(args.batch_size, len(x_tr))
    params, _, history = fn.fit(model, loss, opt, params, x_tr, y_tr, epochs=epochs,
                                batch_size=batch_size, key=k_fit)
    train_time = time.perf_counter() - start

    predict = jax.jit(lambda p, x: jnp.argmax(fn.apply(model, p, x), axis=-1))
    test_acc = float(jnp.mean(predict(params, x_te) == y_te))
    train_acc = float(jnp.mean(predict(params, x_tr) == y_tr))
    print(f"{epochs} epochs, batch {batch_size}, Adam lr={args.lr}: final train loss "
          f"{np.asarray(history['loss'])[-1]:.4f}, train accuracy {100 * train_acc:.2f} %")
    print(f"test accuracy: {100 * test_acc:.2f} %")

    # Manual VJPs vs jax.grad vs float64 finite differences, on a small batch.
    report = fn.check_grads(model, loss, params, x_tr[:8], y_tr[:8],
                            key=k_check if model.needs_key else None)
    print(report)
    print(f"wall time: {time.perf_counter() - start:.1f} s "
          f"(data + compile + training: {train_time:.1f} s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A character-level GPT, every gradient by hand (attention's softmax Jacobian included).

Data: the text of the standard library's ``pydoc_data/topics.py`` (about 465k
characters, 103 distinct; see :mod:`fnnet.demos.text`), the first 90 % for
training and the last 10 % for validation. Model (:func:`fnnet.models.gpt`):
token + learned position embeddings, ``--layers`` pre-LayerNorm blocks of causal
multi-head attention and a GELU MLP, a final LayerNorm, and the output projection
tied to the token embedding. Next-character softmax cross-entropy averaged over
(batch, time); AdamW (weight decay on kernels and tables only) with linear warmup
and cosine decay, the global gradient norm clipped. Each step is one compiled
:func:`fnnet.train_step`.

It prints the training loss (mean over the steps since the last report) and the
validation loss (over validation windows) in nats and bits per character,
characters (tokens) per second, and a sample drawn from an explicit key.
``--method autodiff`` trains the same model with ``jax.grad``'s gradients;
``--memory lean`` uses the FlashAttention-style backward.

Run ``python examples/char_gpt.py --help``.
"""

from __future__ import annotations

import argparse
import jax
import numpy as np

import fnnet as fn
from fnnet.demos import _common, text
from fnnet.models import gpt

QUICK = dict(steps=30, d_model=32, heads=2, layers=1, seq_len=16, batch_size=8, warmup=5,
             eval_every=15, sample_len=40, val_windows=64)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "char_gpt.py",
        description="Train a small character GPT on pydoc_data/topics.py (ships with Python; "
                    "no download) and print losses, throughput and a sample.")
    pi = _common.positive_int
    p.add_argument("--steps", type=pi, default=2000,
                   help="training steps; the learning-rate schedule spans them (default 2000)")
    p.add_argument("--d-model", type=pi, default=128, help="width (default 128)")
    p.add_argument("--heads", type=pi, default=4, help="attention heads (default 4)")
    p.add_argument("--layers", type=pi, default=4, help="transformer blocks (default 4)")
    text.add_adamw_flags(p, lr=3e-3, warmup=100)
    p.add_argument("--memory", choices=("full", "lean"), default="full",
                   help="attention backward: keep the probabilities (full) or recompute them "
                        "in blocks (lean)")
    text.add_run_flags(p, seq_len=128, val_windows=256)
    return p


def run(args) -> dict:
    """Train as ``args`` say; returns the history, final losses and a sample."""
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.d_model % args.heads:
        raise _common.BadArgument(f"argument --heads: {args.heads} does not divide "
                                  f"--d-model {args.d_model}")
    data = corpus, vocab, _, train_ids, val = text.prepare(args)
    model = gpt(len(vocab), args.seq_len, d_model=args.d_model, num_heads=args.heads,
                num_layers=args.layers, memory=args.memory)
    k_init, k_data, k_sample = jax.random.split(jax.random.key(args.seed), 3)
    params = jax.jit(model.init, static_argnums=1)(k_init, (args.seq_len,))
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    print(f"char GPT: {len(corpus):,} characters of pydoc_data/topics.py, vocabulary "
          f"{len(vocab)}; train {len(train_ids):,} / validation {len(corpus) - len(train_ids):,} "
          f"({len(val[0])} windows per evaluation); {args.layers} blocks, d={args.d_model}, "
          f"{args.heads} heads, context {args.seq_len}, {n_params:,} parameters (output "
          f"projection tied to the embedding), {args.memory} attention backward; AdamW peak "
          f"lr={args.lr} (warmup {args.warmup}, cosine), wd {args.weight_decay:g}, clip "
          f"{args.clip:g}, batch {args.batch_size} x {args.seq_len}, {args.steps} steps"
          + (f" or {args.seconds:g} s" if args.seconds else "") + f", method={args.method}")
    return text.train_and_sample(model, text.make_optimizer(args), params, data, args,
                                 train_key=k_data, sample_key=k_sample)


def report(result) -> None:
    text.report(result)


def plot(result, path: str) -> str:
    """Save the train and validation loss curves (bits per character) to ``path``."""
    return text.plot(result, path, "char GPT")


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

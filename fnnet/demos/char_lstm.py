"""A character-level LSTM language model, every gradient by hand (BPTT included).

Data: the text of the standard library's ``pydoc_data/topics.py`` (about 465k
characters, 103 distinct; see :mod:`fnnet.demos.text`), the first 90 % for
training and the last 10 % for validation. Model:
``Embedding(vocab, embed) -> LSTM(hidden) -> Dense(vocab)``, next-character
softmax cross-entropy averaged over (batch, time), Adam with the global gradient
norm clipped, trained on random contiguous windows drawn from an explicit key.
Each step is one compiled :func:`fnnet.train_step`.

It prints the training loss (mean over the steps since the last report) and the
validation loss (over the whole validation text, in windows) in nats and bits per
character, characters per second, and finally a sample drawn with temperature
from an explicit key. ``--method autodiff`` trains the same model with
``jax.grad``'s gradients: same batches, same losses up to float32 rounding.

Run ``python examples/char_lstm.py --help``.
"""

from __future__ import annotations

import argparse

import jax

import fnnet as fn
from fnnet.demos import _common, text

QUICK = dict(steps=30, hidden=32, embed=16, seq_len=16, batch_size=8, eval_every=15,
             sample_len=40, val_windows=64)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "char_lstm.py",
        description="Train an Embedding-LSTM-Dense character model on pydoc_data/topics.py "
                    "(ships with Python; no download) and print losses and a sample.")
    pi, pf = _common.positive_int, _common.positive_float
    p.add_argument("--steps", type=pi, default=3000, help="training steps (default 3000)")
    p.add_argument("--hidden", type=pi, default=256, help="LSTM units (default 256)")
    p.add_argument("--embed", type=pi, default=64, help="embedding size (default 64)")
    p.add_argument("--lr", type=pf, default=3e-3, help="Adam learning rate (default 3e-3)")
    text.add_run_flags(p, seq_len=64, val_windows=None)
    return p


def make_model(vocab_size: int, embed: int, hidden: int):
    return fn.serial(fn.Embedding(vocab_size, embed), fn.LSTM(hidden), fn.Dense(vocab_size))


def run(args) -> dict:
    """Train as ``args`` say; returns the history, final losses and a sample."""
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    data = corpus, vocab, _, train_ids, val = text.prepare(args)
    print(f"char LSTM: {len(corpus):,} characters of pydoc_data/topics.py, vocabulary "
          f"{len(vocab)}; train {len(train_ids):,} / validation {len(corpus) - len(train_ids):,} "
          f"({len(val[0])} windows); Embedding({len(vocab)}, {args.embed})-LSTM({args.hidden})-"
          f"Dense({len(vocab)}), Adam lr={args.lr}, clip {args.clip:g}, batch {args.batch_size} x "
          f"{args.seq_len} characters, {args.steps} steps"
          + (f" or {args.seconds:g} s" if args.seconds else "") + f", method={args.method}")
    model = make_model(len(vocab), args.embed, args.hidden)
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(args.clip), fn.optim.adam(args.lr))
    k_init, k_data, k_sample = jax.random.split(jax.random.key(args.seed), 3)
    params = model.init(k_init, (args.seq_len,))
    return text.train_and_sample(model, opt, params, data, args, train_key=k_data,
                                 sample_key=k_sample)


def report(result) -> None:
    text.report(result)


def plot(result, path: str) -> str:
    """Save the train and validation loss curves (bits per character) to ``path``."""
    return text.plot(result, path, "char LSTM")



def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

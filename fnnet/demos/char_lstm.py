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
    p.add_argument("--seconds", type=pf, default=None,
                   help="stop training after this many seconds (a fixed time budget)")
    p.add_argument("--hidden", type=pi, default=256, help="LSTM units (default 256)")
    p.add_argument("--embed", type=pi, default=64, help="embedding size (default 64)")
    p.add_argument("--seq-len", type=pi, default=64, help="characters per window (default 64)")
    p.add_argument("--batch-size", type=pi, default=32, help="windows per step (default 32)")
    p.add_argument("--lr", type=pf, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--clip", type=pf, default=1.0, help="global gradient-norm clip (default 1)")
    p.add_argument("--eval-every", type=pi, default=250, help="steps between reports (default 250)")
    p.add_argument("--method", choices=("manual", "autodiff"), default="manual",
                   help="hand-written gradients (default) or jax.grad of the same forward")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0: greedy)")
    p.add_argument("--sample-len", type=pi, default=400, help="characters to sample (default 400)")
    p.add_argument("--prompt", default="The ", help="text the sample starts from")
    p.add_argument("--seed", type=int, default=0, help="seed of init, batches and sampling")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run, for tests")
    p.add_argument("--plot", metavar="FILE.png", type=_common.plot_path,
                   help="save the loss curves (bits/char) to FILE.png")
    return p


def make_model(vocab_size: int, embed: int, hidden: int):
    return fn.serial(fn.Embedding(vocab_size, embed), fn.LSTM(hidden), fn.Dense(vocab_size))


def run(args) -> dict:
    """Train as ``args`` say; returns the history, final losses and a sample."""
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    corpus, vocab, prompt, train_ids, val = text.prepare(args)
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
    result = text.train(model, fn.losses.softmax_cross_entropy, opt, params, train_ids, val,
                        args, key=k_data)
    result["model"] = model
    return text.finish(result, lambda p, ids: fn.apply(model, p, ids), vocab, prompt, args,
                       key=k_sample)


def report(result) -> None:
    text.report(result)


def plot(result, path: str) -> str:
    """Save the train and validation loss curves (bits per character) to ``path``."""
    return text.plot(result, path, "char LSTM")



def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

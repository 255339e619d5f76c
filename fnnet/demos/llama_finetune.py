"""A small Llama, end to end by hand: Hugging Face checkpoint out and in, fine-tuning,
per-example gradient norms, generation with a KV cache.

1. Build a Llama (:func:`fnnet.models.llama`: RMSNorm, grouped-query attention with
   rotary positions, SwiGLU, untied output head) over the 103 characters of the
   bundled text (the standard library's ``pydoc_data/topics.py``; nothing downloaded).
2. Save it in the Hugging Face format (:func:`fnnet.models.save_pretrained`:
   ``config.json`` + ``model.safetensors``, Llama's names and ``(out, in)`` layouts, a
   directory ``transformers.LlamaForCausalLM.from_pretrained`` reads), then load it back
   with :func:`fnnet.models.from_pretrained` and check that nothing changed.
3. Fine-tune the loaded model on the text: next-character softmax cross-entropy, AdamW
   (decay on kernels and tables) with warmup + cosine decay and a clipped global
   gradient norm, one compiled :func:`fnnet.train_step` per step (hand-written
   gradients, or ``--method autodiff``), train/validation losses in nats and bits/char.
4. Per-example gradient norms of one batch (:func:`fnnet.per_example_grad_norms`: each
   window's own loss, from one forward and one backward, no per-example gradient formed).
5. A sample from :func:`fnnet.models.generate` (KV cache, temperature, ``--top-k``),
   and the fine-tuned weights saved again in the Hugging Face format (``--out``).

Run ``python examples/llama_finetune.py --help``; ``--quick`` is a seconds-long smoke run.
It needs ``safetensors`` for the checkpoint files (``pip install -e ".[hf]"``).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.demos import _common, text

QUICK = dict(steps=30, d_model=32, heads=4, kv_heads=2, layers=1, hidden=64, seq_len=16,
             batch_size=8, warmup=5, eval_every=15, sample_len=12, val_windows=64)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "llama_finetune.py",
        description="Build a small Llama, save it in the Hugging Face format, load it back, "
                    "fine-tune it on pydoc_data/topics.py (ships with Python; no download), "
                    "print per-example gradient norms of a batch and a generated sample.")
    pi = _common.positive_int
    p.add_argument("--steps", type=pi, default=1000, help="training steps (default 1000)")
    p.add_argument("--d-model", type=pi, default=128, help="width (default 128)")
    p.add_argument("--heads", type=pi, default=4, help="query heads (default 4)")
    p.add_argument("--kv-heads", type=pi, default=2,
                   help="key/value heads, dividing --heads (default 2: grouped-query)")
    p.add_argument("--layers", type=pi, default=2, help="Llama blocks (default 2)")
    p.add_argument("--hidden", type=pi, default=344, help="SwiGLU hidden units (default 344)")
    text.add_adamw_flags(p, lr=3e-3, warmup=50)
    p.add_argument("--top-k", type=pi, default=None,
                   help="sample from the k most likely characters only")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also save the fine-tuned model here in the Hugging Face format")
    text.add_run_flags(p, seq_len=64, val_windows=128)
    return p


def _files(directory: str) -> str:
    return ", ".join(f"{name} ({os.path.getsize(os.path.join(directory, name)):,} bytes)"
                     for name in sorted(os.listdir(directory)))


def save_and_reload(model, params, directory: str):
    """Save in the Hugging Face format, load back; returns ``(model, params, max_diff)``."""
    fn.models.save_pretrained(directory, model, params)
    print(f"saved (fn.models.save_pretrained): {directory}: {_files(directory)}")
    loaded, loaded_params = fn.models.from_pretrained(directory)
    same_tree = jax.tree.structure(loaded_params) == jax.tree.structure(params)
    diff = max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded_params)))
    print(f"loaded back (fn.models.from_pretrained): same parameter tree: {same_tree}, largest "
          f"difference {diff:g}")
    if not same_tree or diff != 0:
        raise RuntimeError("llama_finetune: the checkpoint did not round-trip exactly")
    return loaded, loaded_params, diff


def per_example_norms(model, params, train_ids, args, key):
    """Per-example gradient norms of one training batch, and the norm of the batch's
    (mean) gradient: ``(norms (batch,), float)``; one compiled call."""
    x, y = text.random_batch(jnp.asarray(train_ids), key, batch_size=args.batch_size,
                             seq_len=args.seq_len)
    loss = fn.losses.softmax_cross_entropy

    @jax.jit
    def norms(params, x, y):
        _, grads = fn.value_and_grad(model, loss)(params, x, y)
        return (fn.per_example_grad_norms(model, loss, params, x, y),
                jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads))))

    each, batch = norms(params, x, y)
    return np.asarray(each), float(batch)


def run(args) -> dict:
    """Build, save, reload, fine-tune, inspect and sample as ``args`` say."""
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.heads % args.kv_heads:
        raise _common.BadArgument(f"argument --kv-heads: {args.kv_heads} does not divide "
                                  f"--heads {args.heads}")
    if args.d_model % args.heads or (args.d_model // args.heads) % 2:
        raise _common.BadArgument(f"argument --heads: --d-model {args.d_model} / --heads "
                                  f"{args.heads} must be an even whole number (the rotary "
                                  f"embedding turns pairs of each head's features)")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise _common.BadArgument(f"argument --out: {args.out!r} exists and is not a folder")
    data = corpus, vocab, prompt, train_ids, val = text.prepare(args)
    model = fn.models.llama(len(vocab), args.d_model, args.heads, args.layers, args.hidden,
                            num_kv_heads=args.kv_heads, max_len=args.seq_len)
    k_init, k_data, k_norms, k_sample = jax.random.split(jax.random.key(args.seed), 4)
    params = jax.jit(model.init, static_argnums=1)(k_init, (args.seq_len,))
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    print(f"Llama: vocabulary {len(vocab)} characters of pydoc_data/topics.py "
          f"({len(corpus):,}), {args.layers} block{'s' * (args.layers > 1)}, d={args.d_model}, {args.heads} query / "
          f"{args.kv_heads} key-value heads (rotary), SwiGLU {args.hidden}, context "
          f"{args.seq_len}, {n_params:,} parameters")
    with tempfile.TemporaryDirectory() as tmp:
        model, params, _ = save_and_reload(model, params, tmp)
    print(f"fine-tuning the loaded model: AdamW peak lr={args.lr} (warmup {args.warmup}, "
          f"cosine), wd {args.weight_decay:g}, clip {args.clip:g}, batch {args.batch_size} x "
          f"{args.seq_len}, {args.steps} steps" + (f" or {args.seconds:g} s" if args.seconds
                                                     else "") + f", method={args.method}")
    result = text.train(model, fn.losses.softmax_cross_entropy, text.make_optimizer(args), params,
                        train_ids, val, args, key=k_data)
    params = result["params"]
    norms, batch_norm = per_example_norms(model, params, train_ids, args, k_norms)
    ids = text.continue_ids(model, params, prompt, args.sample_len, k_sample,
                            context=args.seq_len, temperature=args.temperature, top_k=args.top_k)
    if args.out:
        fn.models.save_pretrained(args.out, model, params)
    result.update(model=model, sample=args.prompt + vocab.decode(ids),
                  temperature=args.temperature, top_k=args.top_k, norms=norms,
                  batch_grad_norm=batch_norm, out=args.out, n_params=n_params)
    return result


def report(result) -> None:
    text.report(result)
    norms = result["norms"]
    print(f"per-example gradient norms of one batch of {len(norms)} windows "
          f"(fn.per_example_grad_norms, each window's own loss):")
    print("  " + " ".join(f"{v:.3f}" for v in norms))
    print(f"  min {norms.min():.3f}, median {np.median(norms):.3f}, max {norms.max():.3f}; "
          f"norm of the batch's mean gradient {result['batch_grad_norm']:.3f}")
    if result["top_k"]:
        print(f"(sampled from the top {result['top_k']} characters)")
    if result["out"]:
        print(f"fine-tuned model saved in the Hugging Face format: {result['out']}: "
              f"{_files(result['out'])}")


def plot(result, path: str) -> str:
    """Save the train and validation loss curves (bits per character) to ``path``."""
    return text.plot(result, path, "Llama fine-tuning")


def main(argv=None, prog: str | None = None) -> int:
    return _common.demo_main(build_parser, run, report, plot, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())

"""Character-level text data for the sequence demos, model-agnostic.

The corpus ships with Python itself: the standard library's ``pydoc_data/topics.py``
(the text of ``help("topics")``: the language reference's sections), about 465,000
characters, 103 distinct ones. Nothing is downloaded.

* :func:`load_corpus` -> the text; :class:`Vocab` maps characters to ids and back;
* :func:`split` -> contiguous train / validation id arrays (the tail is validation);
* :func:`random_batch` -> ``(x, y)`` windows at random offsets from an explicit key,
  ``y`` being ``x`` shifted by one character (next-character targets);
* :func:`windows` -> the whole validation text as non-overlapping windows, for a
  deterministic validation loss (:func:`mean_loss`);
* :func:`bits_per_char` converts a loss in nats;
* :func:`continue_ids` continues a prompt with a trained character model, from an
  explicit key: a model with an architecture config (the char GPT) through
  :func:`fnnet.models.generate` (KV cache) in windows of its context, any other causal
  model (the char LSTM, which has no attention to cache) through :func:`sample`, which
  runs the model on the last ``context`` ids for every new one.

The character-model demos (``char_lstm``, ``char_gpt``) share their run on top of
these: :func:`prepare` (corpus, vocabulary, prompt, split, validation windows),
:func:`train` (one compiled ``fn.train_step`` over random batches, periodic
train/validation reports, an optional time budget), :func:`finish` (throughput
and a sample), :func:`report` and :func:`plot`.
"""

from __future__ import annotations

import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

LN2 = math.log(2.0)


def load_corpus() -> str:
    """The text of ``pydoc_data.topics`` (every topic, in file order, newline-joined)."""
    from pydoc_data import topics

    return "\n".join(topics.topics.values())


class Vocab:
    """The sorted set of characters of a text; ids are positions in it."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.array([self.index[c] for c in text], np.int32)
        except KeyError as err:
            raise ValueError(f"Vocab: character {err.args[0]!r} is not in the vocabulary "
                             f"({len(self)} characters)") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def split(ids, val_fraction: float = 0.1):
    """``(train, val)``: the first ``1 - val_fraction`` of the ids, and the rest."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"split: val_fraction must be in (0, 1), got {val_fraction!r}")
    cut = int(round(len(ids) * (1 - val_fraction)))
    return np.asarray(ids[:cut]), np.asarray(ids[cut:])


@partial(jax.jit, static_argnames=("batch_size", "seq_len"))
def random_batch(data, key, *, batch_size: int, seq_len: int):
    """``(x, y)`` of shape ``(batch_size, seq_len)``: windows of ``data`` starting at
    random offsets drawn from ``key``; ``y[:, t] = data[start + t + 1]``."""
    starts = jax.random.randint(key, (batch_size,), 0, data.shape[0] - seq_len)
    idx = starts[:, None] + jnp.arange(seq_len + 1)
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, 1:]


def windows(data, seq_len: int):
    """All non-overlapping ``(x, y)`` windows of ``data`` (the ragged tail dropped)."""
    m = (len(data) - 1) // seq_len
    if m < 1:
        raise ValueError(f"windows: {len(data)} ids are too few for windows of {seq_len}")
    data = np.asarray(data)
    x = data[:m * seq_len].reshape(m, seq_len)
    y = data[1:m * seq_len + 1].reshape(m, seq_len)
    return x, y


def mean_loss(loss_fn, params, x, y, batch_size: int = 64) -> float:
    """Mean of ``loss_fn(params, xb, yb)`` over ``x, y`` in full batches (the remainder
    dropped, so the compiled function sees one shape), weighted equally."""
    bs = min(batch_size, len(x))
    n = (len(x) // bs) * bs
    values = [float(loss_fn(params, jnp.asarray(x[i:i + bs]), jnp.asarray(y[i:i + bs])))
              for i in range(0, n, bs)]
    return float(np.mean(values))


def bits_per_char(nats):
    """A per-character loss in nats, in bits (divide by ln 2)."""
    return nats / LN2


def sample(logits_fn, prompt_ids, length: int, key, *, context: int, temperature: float = 1.0,
           top_k: int | None = None):
    """Generate ``length`` ids after ``prompt_ids`` (a non-empty 1-d int array).

    ``logits_fn(ids)`` maps ``(1, context)`` ids to ``(1, context, vocab)`` logits and
    must be causal (position ``t`` sees ids ``<= t``, as an LSTM or a causal
    transformer): each step feeds the last ``context`` ids (fewer at the start,
    the unused tail of the window holding placeholders that causality ignores) and
    samples from ``softmax(logits / temperature)`` at the last real position, over the
    ``top_k`` most likely ids when given (the token choice of
    :func:`fnnet.models.generate`). ``temperature=0`` is greedy (argmax). One compiled
    loop; returns the new ids.
    """
    from fnnet.models.generate import pick_token

    prompt_ids = np.asarray(prompt_ids, np.int32).reshape(-1)
    if prompt_ids.size == 0:
        raise ValueError("sample: prompt_ids must hold at least one id")
    if not temperature >= 0:
        raise ValueError(f"sample: temperature must be >= 0, got {temperature!r}")
    n0 = prompt_ids.size
    buf = jnp.zeros(n0 + length, jnp.int32).at[:n0].set(prompt_ids)
    pad = jnp.zeros(context, jnp.int32)

    @jax.jit
    def run(buf, key):
        def step(i, buf):
            pos = n0 + i                                   # the position to fill
            start = jnp.maximum(pos - context, 0)
            window = jax.lax.dynamic_slice(jnp.concatenate([buf, pad]), (start,), (context,))
            logits = logits_fn(window[None])[:, pos - 1 - start]
            nxt = pick_token(logits, key, i, temperature=temperature, greedy=temperature == 0,
                             top_k=top_k)
            return buf.at[pos].set(nxt[0])

        return jax.lax.fori_loop(0, length, step, buf)

    return np.asarray(run(buf, key))[n0:]


def continue_ids(model, params, prompt_ids, length: int, key, *, context: int,
                 temperature: float = 1.0, top_k: int | None = None):
    """``length`` new ids after ``prompt_ids`` (a non-empty 1-d int array).

    A model with an architecture config (``fn.models.gpt``, ``gpt2``, ``llama``)
    continues with :func:`fnnet.models.generate` (KV cache): while the text fits its
    ``context`` positions in one call, then in windows, each restarting from the last
    ``context // 2`` ids of the text so far and adding ``context - context // 2`` (one
    compiled program serves every window; window ``w`` samples from
    ``fold_in(key, w)``). Any other causal model goes through :func:`sample` (a window
    of the last ``context`` ids per new id).
    """
    import fnnet as fn
    from fnnet.models.config import config_of

    prompt_ids = np.asarray(prompt_ids, np.int32).reshape(-1)
    if config_of(model) is None:
        return sample(lambda w: fn.apply(model, params, w), prompt_ids, length, key,
                      context=context, temperature=temperature, top_k=top_k)
    if prompt_ids.size == 0:
        raise ValueError("continue_ids: prompt_ids must hold at least one id")
    if context < 2:
        raise ValueError(f"continue_ids: context must be >= 2 positions, got {context}")
    out = list(prompt_ids[-(context - 1):] if context > 1 else prompt_ids[-1:])
    n0, window = len(out), 0
    keep = max(1, context // 2)
    while len(out) - n0 < length:
        head = out[-keep:] if window else out
        ids = fn.models.generate(model, params, np.asarray(head, np.int32)[None],
                                 context - len(head), key=jax.random.fold_in(key, window),
                                 temperature=temperature, top_k=top_k)
        out += np.asarray(ids)[0, len(head):].tolist()
        window += 1
    return np.asarray(out[n0:n0 + length], np.int32)


# --- the character-model demos' shared run ---------------------------------------------

def prepare(args):
    """``(corpus, vocab, prompt_ids, train_ids, (val_x, val_y))`` as ``args`` say
    (``prompt``, ``seq_len``, optional ``val_windows``); bad flags are ``BadArgument``."""
    from ._common import BadArgument

    if args.temperature < 0:
        raise BadArgument(f"argument --temperature: must be >= 0, got {args.temperature}")
    corpus = load_corpus()
    vocab = Vocab(corpus)
    try:
        prompt = vocab.encode(args.prompt)
    except ValueError as err:
        raise BadArgument(f"argument --prompt: {err}") from None
    if prompt.size == 0:
        raise BadArgument("argument --prompt: must not be empty")
    train_ids, val_ids = split(vocab.encode(corpus), 0.1)
    val_x, val_y = windows(val_ids, args.seq_len)
    if getattr(args, "val_windows", None):
        val_x, val_y = val_x[:args.val_windows], val_y[:args.val_windows]
    return corpus, vocab, prompt, train_ids, (val_x, val_y)


def train(model, loss, opt, params, train_ids, val, args, *, key) -> dict:
    """Train with ONE compiled ``fn.train_step(model, loss, opt, method=args.method)`` on
    random windows of ``train_ids`` (batch ``i`` from ``fold_in(key, i)``).

    Every ``args.eval_every`` steps (and at the end) it prints the mean training loss
    since the last report and the validation loss over ``val = (x, y)`` windows, in
    nats and bits/char. Stops after ``args.steps`` steps, or once ``args.seconds`` of
    training (evaluation excluded) have passed. Returns a dict: ``history`` (``step``,
    ``seconds``, ``train_loss``, ``val_loss``), ``steps``, ``seconds``, ``params``,
    ``opt_state``, ``train_loss``, ``val_loss``, ``chars_per_s``, ``method``.
    """
    import fnnet as fn

    opt_state = opt.init(params)
    step = fn.train_step(model, loss, opt, method=args.method)
    val_loss_fn = jax.jit(lambda p, x, y: loss.fwd(fn.apply(model, p, x), y)[0])
    data = jnp.asarray(train_ids)

    def batch(i):
        return random_batch(data, jax.random.fold_in(key, i), batch_size=args.batch_size,
                            seq_len=args.seq_len)

    history = {"step": [], "seconds": [], "train_loss": [], "val_loss": []}
    pending, done, t_eval = [], 0, 0.0
    t_start = time.perf_counter()
    for i in range(args.steps):
        x, y = batch(i)
        params, opt_state, value = step(params, opt_state, x, y)
        pending.append(value)
        done = i + 1
        out_of_time = (args.seconds is not None
                       and time.perf_counter() - t_start - t_eval >= args.seconds)
        if done % args.eval_every == 0 or done == args.steps or out_of_time:
            train_loss = float(np.mean(jax.device_get(pending)))   # waits for the steps
            pending = []
            t0 = time.perf_counter()
            val_loss = mean_loss(val_loss_fn, params, *val)
            t_eval += time.perf_counter() - t0
            elapsed = time.perf_counter() - t_start - t_eval
            for k, v in (("step", done), ("seconds", elapsed), ("train_loss", train_loss),
                         ("val_loss", val_loss)):
                history[k].append(v)
            print(f"step {done:6d}  train {train_loss:.4f} nats = "
                  f"{bits_per_char(train_loss):.3f} bits/char   validation {val_loss:.4f} nats = "
                  f"{bits_per_char(val_loss):.3f} bits/char   ({elapsed:.0f} s training)",
                  flush=True)
        if out_of_time:
            break
    seconds = time.perf_counter() - t_start - t_eval
    return {"history": {k: np.asarray(v) for k, v in history.items()}, "steps": done,
            "seconds": seconds, "params": params, "opt_state": opt_state,
            "train_loss": history["train_loss"][-1], "val_loss": history["val_loss"][-1],
            "chars_per_s": throughput(step, params, opt_state, batch, args, done),
            "method": args.method}


def throughput(step, params, opt_state, batch, args, done: int) -> float:
    """Training characters per second of the compiled ``step``, timed after the run on a
    few extra steps (their batches prepared first, so only the step is timed)."""
    n = min(20, max(3, done // 10))
    batches = [batch(10 ** 6 + j) for j in range(n)]
    jax.block_until_ready(batches)
    t0 = time.perf_counter()
    for x, y in batches:
        params, opt_state, value = step(params, opt_state, x, y)
    jax.block_until_ready(value)
    return n * args.batch_size * args.seq_len / (time.perf_counter() - t0)


def train_and_sample(model, opt, params, data, args, *, train_key, sample_key) -> dict:
    """:func:`train` a character model with softmax cross-entropy on ``data`` (what
    :func:`prepare` returns), then add ``model``, ``sample`` (the prompt and
    ``args.sample_len`` sampled characters) and ``temperature`` to the result."""
    import fnnet as fn

    _, vocab, prompt, train_ids, val = data
    result = train(model, fn.losses.softmax_cross_entropy, opt, params, train_ids, val, args,
                   key=train_key)
    params = result["params"]
    ids = continue_ids(model, params, prompt, args.sample_len, sample_key,
                       context=args.seq_len, temperature=args.temperature)
    result.update(model=model, sample=args.prompt + vocab.decode(ids),
                  temperature=args.temperature)
    return result


def add_adamw_flags(p, *, lr: float, warmup: int):
    """``--lr``, ``--warmup`` and ``--weight-decay`` for :func:`make_optimizer`."""
    from ._common import positive_float, positive_int

    p.add_argument("--lr", type=positive_float, default=lr,
                   help=f"peak AdamW learning rate (default {lr:g})")
    p.add_argument("--warmup", type=positive_int, default=warmup,
                   help=f"linear warmup steps (default {warmup})")
    p.add_argument("--weight-decay", type=float, default=0.1,
                   help="AdamW decoupled weight decay on kernels and tables (default 0.1)")


def make_optimizer(args):
    """Clip the global gradient norm to ``args.clip``, then AdamW (decay on kernels and
    tables only) with linear warmup and cosine decay to a tenth of the peak over
    ``args.steps``."""
    import fnnet as fn

    steps = max(args.steps, args.warmup + 1)
    schedule = fn.optim.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, steps,
                                                     end_value=args.lr / 10)
    return fn.optim.chain(fn.optim.clip_by_global_norm(args.clip),
                          fn.optim.adamw(schedule, weight_decay=args.weight_decay,
                                         mask=fn.optim.kernel_mask))


def add_run_flags(p, *, seq_len: int, val_windows: int | None):
    """The flags both character demos share (budget, batches, reports, sampling, plot)."""
    from ._common import plot_path, positive_float, positive_int

    p.add_argument("--seconds", type=positive_float, default=None,
                   help="stop training after this many seconds (a fixed time budget)")
    p.add_argument("--seq-len", type=positive_int, default=seq_len,
                   help=f"characters per window (default {seq_len})")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="windows per step (default 32)")
    p.add_argument("--clip", type=positive_float, default=1.0,
                   help="global gradient-norm clip (default 1)")
    p.add_argument("--eval-every", type=positive_int, default=250,
                   help="steps between reports (default 250)")
    p.add_argument("--val-windows", type=positive_int, default=val_windows,
                   help="validation windows evaluated per report (default "
                        f"{val_windows or 'all: the whole validation text'})")
    p.add_argument("--method", choices=("manual", "autodiff"), default="manual",
                   help="hand-written gradients (default) or jax.grad of the same forward")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature (0: greedy)")
    p.add_argument("--sample-len", type=positive_int, default=400,
                   help="characters to sample (default 400)")
    p.add_argument("--prompt", default="The ", help="text the sample starts from")
    p.add_argument("--seed", type=int, default=0, help="seed of init, batches and sampling")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run, for tests")
    p.add_argument("--plot", metavar="FILE.png", type=plot_path,
                   help="save the loss curves (bits/char) to FILE.png")


def report(result: dict) -> None:
    """Print the final losses, the throughput and the sample of :func:`train`/:func:`finish`."""
    tr, va = result["train_loss"], result["val_loss"]
    print(f"final ({result['steps']} steps, {result['seconds']:.1f} s of training, method="
          f"{result['method']}): train {tr:.4f} nats = {bits_per_char(tr):.3f} bits/char, "
          f"validation {va:.4f} nats = {bits_per_char(va):.3f} bits/char")
    print(f"throughput: {result['chars_per_s']:,.0f} training characters/s (compiled step)")
    print(f"sample (temperature {result['temperature']:g}):")
    print(result["sample"])


def plot(result: dict, path: str, title: str) -> str:
    """Save the train and validation curves (bits per character vs step) to ``path``."""
    from fnnet import plotting

    fig = plotting.new_figure()
    (ax,) = fig.axes
    h = result["history"]
    for key, style, label in (("train_loss", "o-", "train"), ("val_loss", "s-", "validation")):
        ax.plot(h["step"], bits_per_char(h[key]), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.set_title(f"{title}: validation {bits_per_char(result['val_loss']):.3f} bits/char")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return plotting.save(fig, path)

"""Sequence benchmark cases: an LSTM train step and a 1-d CNN train step.

9. LSTM language-model train step (Embedding -> LSTM(256) -> Dense, T = 64, batch 32,
   Adam): fnnet manual (BPTT by hand: a reverse ``lax.scan``, input projection and
   weight gradients as single matmuls outside the loop) vs autodiff (``jax.grad`` of
   the same forward, i.e. JAX's own scan transpose) vs PyTorch eager (``nn.LSTM``,
   its fused CPU kernel) on the same weights and batch.
10. 1-d CNN classifier train step (three ``Conv1D`` + ReLU, Flatten, Dense; Adam) on
   ``(32, 256, 8)`` signals: manual vs autodiff vs PyTorch eager ``nn.Conv1d``.

Each case reports time per step (interleaved rounds), manual/autodiff from
back-to-back pairs, and the compiled temporary memory (XLA ``memory_analysis``)
of both fnnet steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn

from . import peers
from .timing import compile_ratios, interleaved, paired, step_rows


def lstm_sizes(quick: bool) -> dict:
    if quick:
        return dict(vocab=16, embed=8, hidden=32, T=8, batch=4)
    return dict(vocab=96, embed=64, hidden=256, T=64, batch=32)


def cnn_sizes(quick: bool) -> dict:
    if quick:
        return dict(length=32, channels=4, width=8, classes=5, batch=4)
    return dict(length=256, channels=8, width=64, classes=10, batch=32)


class TorchLSTM(peers.TorchTrainStep):
    """Embedding -> nn.LSTM(batch_first) -> Linear, cross-entropy over (batch, time), Adam;
    weights copied from fnnet's params (transposed as DESIGN.md says)."""

    def __init__(self, params, lr: float, threads=None):
        import torch

        self.torch = torch
        t = lambda a: torch.tensor(np.array(a, np.float32))
        emb, lstm, dense = params
        v, e = emb["table"].shape
        h = lstm["w_hh"].shape[0]
        self.emb = torch.nn.Embedding(v, e)
        self.lstm = torch.nn.LSTM(e, h, batch_first=True)
        self.out = torch.nn.Linear(h, dense["w"].shape[1])
        with torch.no_grad():
            self.emb.weight.copy_(t(emb["table"]))
            self.lstm.weight_ih_l0.copy_(t(lstm["w_ih"]).T)
            self.lstm.weight_hh_l0.copy_(t(lstm["w_hh"]).T)
            self.lstm.bias_ih_l0.copy_(t(lstm["b_ih"]))
            self.lstm.bias_hh_l0.copy_(t(lstm["b_hh"]))
            self.out.weight.copy_(t(dense["w"]).T)
            self.out.bias.copy_(t(dense["b"]))
        mods = (self.emb, self.lstm, self.out)
        self.opt = torch.optim.Adam([p for m in mods for p in m.parameters()], lr=lr)
        self.threads = threads

    def loss(self, ids, labels):
        logits = self.out(self.lstm(self.emb(ids))[0])
        return self.torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                      labels.reshape(-1))



class TorchCNN1D(peers.TorchTrainStep):
    """The same 1-d CNN in PyTorch eager (NCL; the activations are turned back to NLC
    before Flatten so the Dense weights need no permutation); Adam."""

    def __init__(self, params, convs, lr: float, threads=None):
        import torch

        self.torch = torch
        t = lambda a: torch.tensor(np.array(a, np.float32))
        self.convs = []
        for p, (stride, pad) in zip(params[0:-2:2], convs):
            k, cin, cout = p["w"].shape
            m = torch.nn.Conv1d(cin, cout, k, stride=stride, padding=pad)
            with torch.no_grad():
                m.weight.copy_(t(p["w"]).permute(2, 1, 0))
                m.bias.copy_(t(p["b"]))
            self.convs.append(m)
        dense = params[-1]
        self.out = torch.nn.Linear(*dense["w"].shape)
        with torch.no_grad():
            self.out.weight.copy_(t(dense["w"]).T)
            self.out.bias.copy_(t(dense["b"]))
        mods = (*self.convs, self.out)
        self.opt = torch.optim.Adam([p for m in mods for p in m.parameters()], lr=lr)
        self.threads = threads

    def loss(self, x_ncl, labels):
        for m in self.convs:
            x_ncl = self.torch.relu(m(x_ncl))
        logits = self.out(x_ncl.transpose(1, 2).reshape(x_ncl.shape[0], -1))
        return self.torch.nn.functional.cross_entropy(logits, labels)



def _run(cfg, title, model, params, x, labels, torch_factory, torch_inputs, sizes) -> dict:
    """Time manual / autodiff / PyTorch eager train steps on the same weights and data."""
    from .cases import fnnet_steps

    loss, opt = fn.losses.softmax_cross_entropy, fn.optim.adam(1e-3)
    state = opt.init(params)
    fns, mem, first_loss, compile_info = fnnet_steps(cfg, model, loss, opt, params, state, x,
                                                     labels)
    notes = []
    peers.torch_rows(cfg, fns, first_loss, notes,
                     lambda th: torch_factory(jax.device_get(params), th), torch_inputs)
    t = interleaved(fns, rounds=cfg.rounds, reps=2 if cfg.quick else 5, pause=cfg.pause)
    pair = paired(fns["fnnet manual"], fns["fnnet autodiff"], pairs=4 if cfg.quick else 40)
    rows, temp = step_rows(t, mem, first_loss, notes, compile_info=compile_info)
    return {"title": title, "rows": rows, "sizes": sizes, "memory": mem,
            "temp_ratio_manual_over_autodiff": temp["fnnet manual"] / temp["fnnet autodiff"],
            "compile": compile_info,
            "compile_manual_over_autodiff": compile_ratios(compile_info, "fnnet manual",
                                                           "fnnet autodiff"),
            "manual_over_autodiff_paired": pair, "first_step_loss": first_loss, "notes": notes}


def case_lstm(cfg, device) -> dict:
    s = lstm_sizes(cfg.quick)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, s["vocab"], (s["batch"], s["T"] + 1)), jnp.int32)
    x, labels = ids[:, :-1], ids[:, 1:]
    model = fn.serial(fn.Embedding(s["vocab"], s["embed"]), fn.LSTM(s["hidden"]),
                      fn.Dense(s["vocab"]))
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), (s["T"],))
    params, x, labels = jax.device_put((params, x, labels), device)
    return _run(cfg, f"9. LSTM train step: Embedding({s['vocab']}, {s['embed']})-LSTM("
                     f"{s['hidden']})-Dense, T={s['T']}, batch {s['batch']}, Adam",
                model, params, x, labels, lambda p, th: TorchLSTM(p, 1e-3, threads=th),
                lambda torch, dev: (torch.tensor(np.asarray(x, np.int64), device=dev),
                                    torch.tensor(np.asarray(labels, np.int64), device=dev)), s)


def case_cnn1d(cfg, device) -> dict:
    s = cnn_sizes(cfg.quick)
    convs = ((1, 3), (2, 2), (2, 2))             # (stride, padding); kernels 7, 5, 5
    w = s["width"]
    model = fn.serial(fn.Conv1D(w, 7, padding=3), fn.Relu,
                      fn.Conv1D(w, 5, stride=2, padding=2), fn.Relu,
                      fn.Conv1D(w, 5, stride=2, padding=2), fn.Relu,
                      fn.Flatten, fn.Dense(s["classes"]))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((s["batch"], s["length"], s["channels"]), np.float32))
    labels = jnp.asarray(rng.integers(0, s["classes"], s["batch"]), jnp.int32)
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0),
                                                   (s["length"], s["channels"]))
    params, x, labels = jax.device_put((params, x, labels), device)
    return _run(cfg, f"10. 1-d CNN train step: Conv1D({w},7)-Conv1D({w},5,s2)-Conv1D({w},5,s2)"
                     f"-Dense({s['classes']}) on ({s['batch']}, {s['length']}, {s['channels']}), "
                     f"Adam", model, params, x, labels,
                lambda p, th: TorchCNN1D(p, convs, 1e-3, threads=th),
                lambda torch, dev: (torch.tensor(np.asarray(x).transpose(0, 2, 1).copy(),
                                                 device=dev),
                                    torch.tensor(np.asarray(labels, np.int64), device=dev)), s)

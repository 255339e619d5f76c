"""Reference implementations fnnet is compared with: plain NumPy, PyTorch eager.

The NumPy code is what a learner writes from scratch: forward, hand-derived
backward, SGD, one Python iteration per step. PyTorch is optional (an optional
peer, never a dependency of fnnet or of any extra): when it is not installed the
benchmark skips it with a note. On these machines ``pip install torch==2.13.0``
installs a local CPU build; an unpinned ``pip install torch`` pulls gigabytes of
CUDA packages.
"""

from __future__ import annotations

import numpy as np


# --- NumPy ------------------------------------------------------------------------

def numpy_xor_train(w1, b1, w2, b2, x, y, *, lr: float, epochs: int):
    """XOR 2-H-1, ReLU hidden, sigmoid BCE on logits, full-batch SGD, from scratch.

    Returns ``(params, losses)``; the arrays passed in are copied, not modified.
    """
    w1, b1, w2, b2 = (np.array(a, np.float32) for a in (w1, b1, w2, b2))
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    n = x.shape[0]
    losses = np.empty(epochs, np.float32)
    for epoch in range(epochs):
        z1 = x @ w1 + b1                       # forward
        h = np.maximum(z1, 0)
        z2 = h @ w2 + b2
        losses[epoch] = np.mean(np.logaddexp(0, z2) - y * z2)
        dz2 = (1 / (1 + np.exp(-z2)) - y) / n  # backward: d mean BCE / d logits
        dw2, db2 = h.T @ dz2, dz2.sum(0)
        dz1 = (dz2 @ w2.T) * (z1 > 0)
        dw1, db1 = x.T @ dz1, dz1.sum(0)
        w1 -= lr * dw1                         # SGD
        b1 -= lr * db1
        w2 -= lr * dw2
        b2 -= lr * db2
    return (w1, b1, w2, b2), losses


class NumpyMLP:
    """ReLU MLP with softmax cross-entropy (integer labels) and SGD, float32, in place."""

    def __init__(self, weights, biases, lr: float):
        self.w = [np.array(w, np.float32) for w in weights]
        self.b = [np.array(b, np.float32) for b in biases]
        self.lr = np.float32(lr)

    def step(self, x, labels):
        hs, zs = [x], []
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            z = hs[-1] @ w + b
            zs.append(z)
            if i < len(self.w) - 1:
                hs.append(np.maximum(z, 0))
        z = zs[-1]
        n = z.shape[0]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = float(np.mean(np.log(s[:, 0]) - z[rows, labels]))
        dz = e / s
        dz[rows, labels] -= 1
        dz /= n
        for i in reversed(range(len(self.w))):
            dw, db = hs[i].T @ dz, dz.sum(0)
            if i > 0:                          # the input needs no gradient
                dz = (dz @ self.w[i].T) * (zs[i - 1] > 0)
            self.w[i] -= self.lr * dw
            self.b[i] -= self.lr * db
        return loss


# --- PyTorch (optional) -------------------------------------------------------------

_TORCH_THREADS = []     # torch's default thread count, read once (rows may change it)


def torch_threads() -> int:
    import torch

    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    return _TORCH_THREADS[0]


def cuda_tf32(torch) -> str:
    """Give PyTorch's CUDA matmuls the precision of JAX's: on an NVIDIA GPU of compute
    capability >= 8, JAX's default float32 matmul runs in TF32 (case 6's "float32" peak on
    an H200 is ~340 TFLOP/s, five times plain float32's), while PyTorch's default is plain
    float32. Without this the rows would compare different arithmetic. Returns the note."""
    torch.set_float32_matmul_precision("high")        # TF32 for float32 matmuls
    torch.backends.cudnn.allow_tf32 = True
    return ("PyTorch CUDA float32 matmuls in TF32 (set_float32_matmul_precision('high')), "
            "as JAX's default float32 matmul precision on this GPU")


def torch_available() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, ("PyTorch not installed: peer skipped (CPU build: "
                       "pip install torch==2.13.0; never an fnnet extra)")
    return True, f"torch {torch.__version__}, default {torch_threads()} threads"


class TorchTrainStep:
    """``step(*batch)``: zero the gradients, ``self.loss(*batch).backward()``, ``self.opt.step()``,
    on ``self.threads`` threads when set. A peer model defines ``loss`` and sets ``torch``,
    ``opt`` and ``threads``; built on the CPU, :meth:`to` moves it (``"cuda"``: each step
    then ends in ``torch.cuda.synchronize()``, as fnnet's in ``block_until_ready``)."""

    device = "cpu"

    def to(self, device: str):
        """Move the peer's modules (parameters and buffers) and every parameter the
        optimizer holds to ``device``, in place (the optimizer keeps them); returns self."""
        def modules(v):
            if isinstance(v, self.torch.nn.Module):
                yield v
            elif isinstance(v, (list, tuple)):
                for item in v:
                    yield from modules(item)

        for m in modules(list(vars(self).values())):
            m.to(device)
        for group in self.opt.param_groups:
            for p in group["params"]:
                p.data = p.data.to(device)
        self.device = device
        return self

    def step(self, *batch):
        if self.threads and self.torch.get_num_threads() != self.threads:
            self.torch.set_num_threads(self.threads)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(*batch)
        loss.backward()
        self.opt.step()
        if self.device != "cpu":
            self.torch.cuda.synchronize()
        return loss


class TorchMLP:
    """The same MLP in PyTorch eager: Linear/ReLU stack, CrossEntropyLoss, SGD."""

    def __init__(self, weights, biases, lr: float, device: str = "cpu", dtype=None):
        import torch

        self.torch = torch
        self.device = device
        dtype = dtype or torch.float32
        layers = []
        for i, (w, b) in enumerate(zip(weights, biases)):
            lin = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(np.array(w, np.float32).T))
                lin.bias.copy_(torch.tensor(np.array(b, np.float32)))
            layers.append(lin)
            if i < len(weights) - 1:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers).to(device=device, dtype=dtype)
        self.loss = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.dtype = dtype

    def put(self, x, labels):
        t = self.torch
        return (t.tensor(np.array(x, np.float32)).to(self.device, self.dtype),
                t.tensor(np.array(labels, np.int64)).to(self.device))

    def step(self, x, labels, threads=None):
        if threads and self.torch.get_num_threads() != threads:
            self.torch.set_num_threads(threads)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.model(x), labels)
        loss.backward()
        self.opt.step()
        if self.device != "cpu":
            self.torch.cuda.synchronize()
        return loss


def torch_rows(cfg, fns: dict, first_loss: dict, notes: list, make, inputs, *,
               available=None):
    """Add the PyTorch eager rows of a train-step case to ``fns``: on the CPU its default
    threads and (on a shared machine, whose OpenMP barriers stall) 1 thread; on a GPU
    one CUDA row. ``make(threads)`` builds the peer on the CPU (weights copied from
    fnnet's), ``inputs(torch, device)`` the batch; ``available()`` -> ``(ok, note)``
    (default :func:`torch_available`)."""
    ok, why = (available or torch_available)()
    notes.append(why)
    if not ok:
        return
    import torch

    if cfg.device == "gpu":
        if not torch.cuda.is_available():
            notes.append("PyTorch has no CUDA here (a CPU build?): its GPU row is skipped")
            return
        notes.append(cuda_tf32(torch))
        tm = make(None).to("cuda")
        batch = inputs(torch, "cuda")
        with torch.no_grad():
            first_loss["PyTorch eager"] = float(tm.loss(*batch))
        fns["PyTorch eager cuda"] = lambda: tm.step(*batch)
        return
    batch = inputs(torch, "cpu")
    tm = make(None)
    with torch.no_grad():
        first_loss["PyTorch eager"] = float(tm.loss(*batch))
    nthreads = torch_threads()
    fns[f"PyTorch eager cpu ({nthreads} threads)"] = lambda: tm.step(*batch)
    if nthreads > 1 and not cfg.quick:
        tm1 = make(1)
        fns["PyTorch eager cpu, 1 thread"] = lambda: tm1.step(*batch)

"""The benchmark cases. Each returns a dict: ``rows`` (one per implementation),
plus case-level facts; :mod:`benchmarks.__main__` prints them and checks targets.

FLOP counting (only what is actually computed): a Dense layer of a batch ``n``
costs ``2 n in out`` forward, ``2 n in out`` for ``dW`` and ``2 n in out`` for
``dx`` -- except the FIRST layer, whose ``dx`` (the gradient w.r.t. the data) is
dead code: XLA removes it (the compiled step holds ``3L - 1`` dots, checked
below), PyTorch never computes it (the input does not require grad) and the NumPy
reference skips it. Elementwise work (bias, ReLU, loss, SGD) is not counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.loop import run_epochs

from . import peers
from .timing import (block, compile_ratios, compile_times, interleaved, paired, ratio,
                     summary, timed_call)


@dataclass(frozen=True)
class Config:
    quick: bool
    device: str            # "cpu" or "gpu"
    cases: tuple

    # sizes and repetitions; quick mode is a seconds-long smoke test
    @property
    def xor_epochs(self):
        return 100 if self.quick else 10_000

    @property
    def rounds(self):
        return 2 if self.quick else 7

    @property
    def mlp_sizes(self):
        return (64, 32, 32, 10) if self.quick else (784, 512, 512, 10)

    @property
    def mlp_batch(self):
        return 16 if self.quick else 256

    @property
    def large_sizes(self):
        if self.quick:
            return (128, 128, 128)
        return (8192, 8192, 8192) if self.device == "gpu" else (4096, 4096, 4096)

    @property
    def large_batch(self):
        if self.quick:
            return 32
        return 4096 if self.device == "gpu" else 1024

    @property
    def matmul_sizes(self):
        if self.quick:
            return (256,)
        return (4096, 8192) if self.device == "gpu" else (1024, 1536, 2048)

    @property
    def dtypes(self):
        # GPU adds bfloat16 variants (bf16 params and inputs: bf16 matmuls)
        return ("float32", "bfloat16") if self.device == "gpu" else ("float32",)

    @property
    def pause(self):
        return 0.0 if self.quick else 0.2

    @property
    def sweep_seeds(self):
        return 10 if self.quick else 100


# --- helpers ------------------------------------------------------------------------

def mlp_flops(sizes, batch) -> int:
    """FLOPs of one SGD step of a dense MLP (matmuls only, first layer's dx excluded)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    per = [2 * batch * i * o for i, o in layers]
    return sum(per) * 2 + sum(per[1:])


def dot_count(hlo_text: str) -> int:
    """Matmul instructions in compiled HLO: ``dot`` ops and matmul custom calls."""
    dots = len(re.findall(r"\s(?:dot|convolution)\(", hlo_text))
    calls = len(re.findall(r'custom_call_target="[^"]*(?:matmul|gemm|dot)[^"]*"', hlo_text,
                           flags=re.IGNORECASE))
    return dots + calls


def memory(compiled) -> dict:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {k: int(getattr(m, k + "_size_in_bytes", 0))
           for k in ("argument", "output", "alias", "temp", "generated_code")}
    peak = getattr(m, "peak_memory_in_bytes", None)
    out["peak"] = int(peak) if peak else out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def row(impl, t, *, flops=None, peak=None, ref=None, **extra):
    """One table row. ``t`` is an :func:`interleaved` result (seconds per call)."""
    r = {"impl": impl, "time_s": {k: v for k, v in t.items() if k != "rounds"},
         "rounds_s": t["rounds"], "per_s": 1.0 / t["median"]}
    if flops:
        r["gflops"] = flops / t["median"] / 1e9
        r["gflops_rounds"] = summary([flops / ti / 1e9 for ti in t["rounds"]])
        if peak is not None:
            # share of case 6's peak (median GFLOP/s of the best matmul size) ...
            r["peak_share"] = summary([flops / ti / 1e9 / peak["peak"] for ti in t["rounds"]])
            # ... and of the matmul timed inside the same rounds (a load-matched check)
            r["peak_share_in_round"] = summary(
                [flops / ti / p / 1e9 for ti, p in zip(t["rounds"], peak["rounds_gflops"])])
    if ref is not None:
        r["ratio_ref_over_this"] = ratio(ref, t)
    r.update(extra)
    return r


def jitted_step(model, loss, opt, method):
    """``train_step``'s program as a plain ``jax.jit`` (so it can be lowered for memory)."""
    vg = fn.value_and_grad(model, loss, method=method)

    def step(params, state, x, y):
        value, grads = vg(params, x, y)
        updates, state = opt.update(grads, state, params)
        return fn.optim.apply_updates(params, updates), state, value

    return jax.jit(step)


def fnnet_steps(cfg, model, loss, opt, params, state, x, y, *, methods=None):
    """The fnnet rows of a train-step case: ``(fns, memory, first_loss, compile)``.

    ``methods``: ``{row name: (model, method)}`` (default: ``model`` manual and
    autodiff). Each row's step is compiled once (its temp memory, its first loss);
    ``compile`` holds trace and XLA compile times of fresh programs, measured in
    alternating order (:func:`benchmarks.timing.compile_times`).
    """
    methods = methods or {f"fnnet {m}": (model, m) for m in ("manual", "autodiff")}
    fns, mem, first_loss = {}, {}, {}
    for name, (mdl, method) in methods.items():
        step = jitted_step(mdl, loss, opt, method).lower(params, state, x, y).compile()
        cost = step.cost_analysis() or {}
        mem[name] = {**memory(step), "flops": float((cost[0] if isinstance(cost, list)
                                                      else cost).get("flops", 0.0))}
        first_loss[name] = float(step(params, state, x, y)[2])
        fns[name] = (lambda step=step: block(step(params, state, x, y)))
    compile_info = compile_times(
        {name: (lambda mdl=mdl, method=method: (jitted_step(mdl, loss, opt, method),
                                               (params, state, x, y)))
         for name, (mdl, method) in methods.items() if name in ("fnnet manual",
                                                                 "fnnet autodiff")},
        trials=1 if cfg.quick else 3)
    return fns, mem, first_loss, compile_info


def device_put(tree, device):
    return jax.device_put(tree, device)


# --- 6. matmul peak ---------------------------------------------------------------

def case_matmul_peak(cfg: Config, device) -> dict:
    rows, fns, flops = [], {}, {}
    for dtype in cfg.dtypes:
        for n in cfg.matmul_sizes:
            rng = np.random.default_rng(n)
            a = device_put(jnp.asarray(rng.standard_normal((n, n), np.float32)).astype(dtype), device)
            b = device_put(jnp.asarray(rng.standard_normal((n, n), np.float32)).astype(dtype), device)
            f = jax.jit(jnp.dot)
            block(f(a, b))
            name = f"jnp.dot {n}x{n} {dtype}"
            fns[name] = (lambda f=f, a=a, b=b: block(f(a, b)))
            flops[name] = (2 * n ** 3, dtype, n)
    reps = 3 if cfg.quick else (5 if cfg.device == "gpu" else 10)
    t = interleaved(fns, rounds=cfg.rounds, reps=reps, pause=cfg.pause)
    best = {}
    for name, res in t.items():
        fl, dtype, n = flops[name]
        r = row(name, res, flops=fl, dtype=dtype, n=n)
        rows.append(r)
        if r["gflops"] > best.get(dtype, (0, None))[0]:
            best[dtype] = (r["gflops"], n)
    return {"title": "6. float32 matmul peak (jnp.dot)", "rows": rows,
            "peak_gflops": {d: v[0] for d, v in best.items()},
            "peak_size": {d: v[1] for d, v in best.items()}}


def matmul_reference(cfg, device, peak_case, dtype="float32"):
    """A callable timing the best-size matmul, to interleave with a case's rounds."""
    n = peak_case["peak_size"][dtype]
    rng = np.random.default_rng(1)
    a = device_put(jnp.asarray(rng.standard_normal((n, n), np.float32)).astype(dtype), device)
    f = jax.jit(jnp.dot)
    block(f(a, a))
    return (lambda: block(f(a, a))), 2 * n ** 3


def with_peak(t: dict, name: str, flops_ref: int) -> dict:
    """Attach per-round matmul GFLOP/s (the round's measured peak) to timings."""
    ref = t.pop(name)
    return {"rounds_gflops": [flops_ref / x / 1e9 for x in ref["rounds"]],
            "gflops": summary([flops_ref / x / 1e9 for x in ref["rounds"]])}


# --- 1. XOR -------------------------------------------------------------------------

def _xor_problem():
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.array([[0], [1], [1], [0]], jnp.float32)
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    return x, y, net, fn.losses.sigmoid_binary_cross_entropy, fn.optim.sgd(0.1)


def case_xor(cfg: Config, device) -> dict:
    E = cfg.xor_epochs
    x, y, net, loss, opt = _xor_problem()
    params = init_params(net, jax.random.key(0), (2,))
    state = opt.init(params)

    # compile time: the program fit runs (run_epochs under jit), traced and compiled fresh
    # in alternating order (timing.compile_times); its loop as ONE XLA:CPU kernel
    def program(method):
        return lambda: (jax.jit(lambda p, s, x, y: run_epochs(
            net, loss, opt, p, s, x, y, None, epochs=E, method=method)), (params, state, x, y))

    programs = {m: program(m) for m in ("manual", "autodiff")}
    compile_info = compile_times(programs, trials=1 if cfg.quick else 5)
    compile_ratio = compile_ratios(compile_info, "manual", "autodiff")
    one_kernel = {}
    for method in ("manual", "autodiff"):
        jitted, args = programs[method]()
        one_kernel[method] = one_loop_kernel(jitted.lower(*args).compile().as_text())
        # first fn.fit call of a fresh model object (trace + compile + one run)
        fresh = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
        compile_info[method]["first_fit_call_s"] = timed_call(
            lambda: fn.fit(fresh, loss, opt, params, x, y, epochs=E, method=method))

    def fit(method):
        def go():
            p, s, hist = fn.fit(net, loss, opt, params, x, y, epochs=E, method=method)
            block(p)
            return hist
        return go

    step = fn.train_step(net, loss, opt)

    def step_loop():
        p, s = params, state
        for _ in range(E):
            p, s, v = step(p, s, x, y)
        return block(p)

    w1, b1 = np.asarray(params[0]["w"]), np.asarray(params[0]["b"])
    w2, b2 = np.asarray(params[2]["w"]), np.asarray(params[2]["b"])
    np_x, np_y = np.asarray(x), np.asarray(y)

    def numpy_loop():
        return peers.numpy_xor_train(w1, b1, w2, b2, np_x, np_y, lr=0.1, epochs=E)

    fns = {"fnnet fit (whole run compiled), manual": fit("manual"),
           "fnnet fit, autodiff": fit("autodiff"),
           "fnnet jitted train_step, Python loop": step_loop,
           "NumPy from-scratch loop": numpy_loop}
    reps = {k: (3 if cfg.quick else 15) for k in fns}
    reps["fnnet jitted train_step, Python loop"] = 1   # slow: one run per round
    reps["NumPy from-scratch loop"] = 1
    t = interleaved(fns, rounds=cfg.rounds if cfg.quick else 5, reps=reps, pause=cfg.pause)

    pair = paired(fns["fnnet fit (whole run compiled), manual"], fns["fnnet fit, autodiff"],
                  pairs=10 if cfg.quick else 200)

    # the implementations agree: final losses of fnnet and NumPy
    hist = fit("manual")()["loss"]
    np_losses = numpy_loop()[1]
    agree = float(np.max(np.abs(np.asarray(hist) - np_losses)))

    flops_epoch = 2 * 4 * (2 * 3 + 3 * 1) * 2 + 2 * 4 * 3 * 1
    ref = t["fnnet fit (whole run compiled), manual"]
    rows = []
    for name, res in t.items():
        r = row(name, res, flops=flops_epoch * E, ref=ref,
                per_epoch_us=res["median"] / E * 1e6)
        if name.startswith("fnnet fit"):
            m = "manual" if "manual" in name else "autodiff"
            r.update({k: v for k, v in compile_info[m].items() if not k.endswith("_trials")})
        rows.append(r)
    return {"title": f"1. XOR 2-3-1, lr 0.1, {E:,} epochs (time per whole run)",
            "rows": rows, "epochs": E, "max_loss_diff_fnnet_vs_numpy": agree,
            "manual_over_autodiff_paired": pair, "compile": compile_info,
            "compile_manual_over_autodiff": compile_ratio,
            "one_loop_kernel": one_kernel if cfg.device == "cpu" else None,
            "final_loss": float(hist[-1])}


def one_loop_kernel(hlo_text: str) -> bool:
    """Whether XLA:CPU compiled the program's ``while`` loop into ONE kernel: its
    small-while-loop pass wraps a loop whose iteration reads and writes under 1 KiB
    (XLA's cost analysis) in a call tagged ``xla_cpu_small_call``. One XOR epoch is
    ~0.13 us as one kernel and ~1.5 us as a loop of separate kernels (thunks), so an
    epoch that grows past the threshold (one more operand, record or check) makes a
    10,000-epoch fit 5-10x slower at once."""
    return 'xla_cpu_small_call="true"' in hlo_text


# --- 11. compile reuse ---------------------------------------------------------------

def case_reuse(cfg: Config, device) -> dict:
    """``fit`` again with fresh objects: new learning rate, new epochs, rebuilt model.

    Each call of a "fresh" row builds a NEW optimizer (a new learning rate every
    call), a new epoch count or a new ``serial``; fit compiles once per model
    structure, data shape, optimizer kind and bucket of epochs (powers of 2), so
    these reuse the cached program. ``compiles`` counts the entries added to the
    compiled loop's cache over all timed calls (0 expected).
    """
    E = cfg.xor_epochs
    x, y, net, loss, opt = _xor_problem()
    params = init_params(net, jax.random.key(0), (2,))
    lrs = iter(np.linspace(0.05, 0.5, 100_000))
    epochs = iter(np.tile(np.arange(E - 40, E), 10_000))
    loop = fn.train._compiled_loop
    adam = fn.optim.adam(1e-3)

    def go(model, o, e=E):
        return lambda: block(fn.fit(model, loss, o() if callable(o) else o, params, x, y,
                                    epochs=e() if callable(e) else e)[0])

    first = None if cfg.quick else timed_call(      # a new shape: trace + compile + run
        go(fn.serial(fn.Dense(3), fn.Relu, fn.Dense(2)), opt))
    fns = {"cached: same objects": go(net, opt),
           "fresh optimizer, new learning rate each call": go(
               net, lambda: fn.optim.sgd(float(next(lrs)))),
           "cached adam: same objects": go(net, adam),
           "fresh adam, new learning rate each call": go(
               net, lambda: fn.optim.adam(float(next(lrs)) / 100)),
           "new number of epochs each call": go(net, opt, lambda: int(next(epochs))),
           "rebuilt identical serial each call": lambda: go(
               fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1)), opt)()}
    if cfg.quick:               # a smoke test: no second optimizer kind to compile
        del fns["fresh adam, new learning rate each call"], fns["cached adam: same objects"]
    for f in fns.values():      # compile every program once (adam is another kind)
        f()
    size = loop._cache_size()
    t = interleaved(fns, rounds=cfg.rounds, reps=3 if cfg.quick else 10, pause=cfg.pause)
    compiles = loop._cache_size() - size
    ref = t["cached: same objects"]
    rows = [row(name, t[name], ref=ref) for name in fns]
    # each row against the cached run of its own optimizer kind
    worst = max(ratio(t[name], t["cached adam: same objects"] if "adam" in name else ref)["median"]
                for name in fns)
    return {"title": f"11. compile reuse: XOR fit of {E:,} epochs again with fresh objects",
            "rows": rows, "first_call_with_compile_s": first, "compiles_during_timing": compiles,
            "worst_over_cached": worst,
            "notes": [] if first is None else
            [f"first call of a new shape (trace + compile + run): {first * 1e3:.0f} ms"]}


# --- 2./3. MLP SGD step -------------------------------------------------------------

def _mlp(sizes, batch, dtype, seed=0):
    layers = []
    for i, width in enumerate(sizes[1:]):
        layers.append(fn.Dense(width, dtype=jnp.dtype(dtype)))
        if i < len(sizes) - 2:
            layers.append(fn.Relu)
    net = fn.serial(*layers)
    params = init_params(net, jax.random.key(seed), (sizes[0],))
    rng = np.random.default_rng(seed)        # data from NumPy: no per-shape compiles
    x = jnp.asarray(rng.standard_normal((batch, sizes[0]), np.float32)).astype(dtype)
    labels = jnp.asarray(rng.integers(0, sizes[-1], batch, dtype=np.int32))
    return net, params, x, labels


def init_params(net, key, shape):
    """``net.init`` as ONE compiled call (eager init compiles every op separately)."""
    return jax.jit(net.init, static_argnums=1)(key, tuple(shape))


def case_mlp(cfg: Config, device, peak_case, *, sizes, batch, title, lr=0.01,
             dtype="float32", with_numpy=True) -> dict:
    net, params, x, labels = _mlp(sizes, batch, dtype)
    params, x, labels = device_put((params, x, labels), device)
    loss, opt = fn.losses.softmax_cross_entropy, fn.optim.sgd(lr)
    state = opt.init(params)
    flops = mlp_flops(sizes, batch)
    notes, compiled, info = [], {}, {}

    fns = {}
    for method in ("manual", "autodiff"):
        step = fn.train_step(net, loss, opt, method=method)
        c = step.lower(params, state, x, labels).compile()
        compiled[method] = c
        info[method] = {"dots_in_hlo": dot_count(c.as_text()), "memory": memory(c)}
        block(step(params, state, x, labels))
        fns[f"fnnet {method}"] = (lambda step=step: block(step(params, state, x, labels)))
    # trace and XLA compile of the same program, fresh each trial, alternating
    compile_info = compile_times(
        {m: (lambda m=m: (jitted_step(net, loss, opt, m), (params, state, x, labels)))
         for m in ("manual", "autodiff")},
        trials=1 if cfg.quick else (3 if cfg.device == "gpu" else 5))
    for method in info:
        info[method].update({k: v for k, v in compile_info[method].items()
                             if not k.endswith("_trials")})
    expected_dots = 3 * (len(sizes) - 1) - 1
    for method in info:
        if info[method]["dots_in_hlo"] != expected_dots:
            notes.append(f"{method}: {info[method]['dots_in_hlo']} matmuls in the compiled "
                         f"step, expected {expected_dots}: FLOP count may be off")

    weights = [np.asarray(p["w"], np.float32) for p in params[::2]]
    biases = [np.asarray(p["b"], np.float32) for p in params[::2]]
    ok, why = peers.torch_available()
    if ok and cfg.device == "gpu":
        import torch

        if not torch.cuda.is_available():
            ok, why = False, why + "; no CUDA in this PyTorch build: its GPU row is skipped"
    if ok:
        import torch

        tdev = "cuda" if cfg.device == "gpu" else "cpu"
        if tdev == "cuda":
            notes.append(peers.cuda_tf32(torch))
        tdtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        tm = peers.TorchMLP(weights, biases, lr, device=tdev, dtype=tdtype)
        tx, tl = tm.put(x, labels)
        nthreads = peers.torch_threads()
        fns[f"PyTorch eager {tdev}"] = lambda: tm.step(tx, tl, threads=nthreads)
        if tdev == "cpu" and nthreads > 1:
            # on a shared 2-core machine OpenMP barriers stall when another process
            # holds a core: also time 1 thread, the target uses the faster of the two
            fns["PyTorch eager cpu, 1 thread"] = lambda: tm.step(tx, tl, threads=1)
        notes.append(why)
    else:
        notes.append(why)
    if with_numpy and cfg.device == "cpu":
        nm = peers.NumpyMLP(weights, biases, lr)
        nx, nl = np.asarray(x, np.float32), np.asarray(labels)
        fns["NumPy from scratch"] = lambda: nm.step(nx, nl)

    mm, mm_flops = matmul_reference(cfg, device, peak_case, dtype)
    fns["_matmul"] = mm
    step_s = flops / (peak_case["peak_gflops"][dtype] * 1e9)
    reps = max(2, min(30, int(0.15 / step_s))) if not cfg.quick else 3
    t = interleaved(fns, rounds=cfg.rounds if step_s < 0.05 else max(2, cfg.rounds // 2),
                    reps=reps, pause=cfg.pause)
    pair = paired(fns["fnnet manual"], fns["fnnet autodiff"],
                  pairs=6 if cfg.quick else max(6, min(150, int(3.0 / step_s))))
    peak = with_peak(t, "_matmul", mm_flops)
    peak["peak"] = peak_case["peak_gflops"][dtype]
    ref = t["fnnet manual"]
    rows = []
    for name, res in t.items():
        extra = info.get(name.replace("fnnet ", ""), {})
        extra = {k: v for k, v in extra.items() if k != "memory"}
        rows.append(row(name, res, flops=flops, peak=peak, ref=ref, **extra))
    return {"title": title, "rows": rows, "flops_per_step": flops, "batch": batch,
            "sizes": sizes, "dtype": dtype, "matmul_peak_in_rounds": peak["gflops"],
            "memory": {m: info[m]["memory"] for m in info}, "notes": notes,
            "compile": compile_info,
            "compile_manual_over_autodiff": compile_ratios(compile_info, "manual", "autodiff"),
            "manual_over_autodiff_paired": pair}


# --- 4. sweep -----------------------------------------------------------------------

def case_sweep(cfg: Config, device) -> dict:
    E, S = cfg.xor_epochs, cfg.sweep_seeds
    x, y, net, loss, opt = _xor_problem()
    notes = []

    sweep_fn = getattr(fn, "sweep", None)
    keys = jax.random.split(jax.random.key(0), S)
    if sweep_fn is not None:
        # fn.sweep: run i = init from split(keys[i])[0], fit with key split(keys[i])[1]
        notes.append(f"sweep: fn.sweep(net, loss, opt, x, y, keys=<{S} keys>, epochs=E); one "
                     "model: fn.fit of run 0 with the same init and fit key (same program)")
        init_key, fit_key = jax.random.split(keys[0])
        p0 = init_params(net, init_key, (2,))

        def one():
            out = fn.fit(net, loss, opt, p0, x, y, epochs=E, key=fit_key)
            return block(out[0])

        def many():
            return block(sweep_fn(net, loss, opt, x, y, keys=keys, epochs=E)[0])
    else:
        notes.append("sweep: jax.jit(jax.vmap(run_epochs)) (fn.sweep not available); one model: "
                     "jax.jit(run_epochs)")

        params = jax.jit(jax.vmap(lambda k: net.init(k, (2,))))(keys)
        states = jax.jit(jax.vmap(opt.init))(params)
        one_p = jax.tree.map(lambda a: a[0], params)
        one_s = jax.tree.map(lambda a: a[0], states)

        def run(p, s):
            return run_epochs(net, loss, opt, p, s, x, y, None, epochs=E, batch_size=None,
                              method="manual")

        single, vm = jax.jit(run), jax.jit(jax.vmap(run))

        def one():
            return block(single(one_p, one_s))

        def many():
            return block(vm(params, states))
    first = {"one model (compiled run)": timed_call(one),
             f"{S} seeds, one vmapped compiled call": timed_call(many)}
    fns = {"one model (compiled run)": one, f"{S} seeds, one vmapped compiled call": many}
    t = interleaved(fns, rounds=cfg.rounds, reps=3 if cfg.quick else 5, pause=cfg.pause)
    ref = t["one model (compiled run)"]
    rows = [row(name, t[name], ref=ref, first_call_s=first[name]) for name in fns]
    sweep_over_one = ratio(t[f"{S} seeds, one vmapped compiled call"], ref)
    return {"title": f"4. sweep: {S} XOR seeds x {E:,} epochs vs one model", "rows": rows,
            "sweep_over_one": sweep_over_one, "notes": notes}


# --- 5. memory ----------------------------------------------------------------------

def case_memory(cfg: Config, device, mlp_cases) -> dict:
    rows = []
    x, y, net, loss, opt = _xor_problem()
    p = init_params(net, jax.random.key(0), (2,))
    s = opt.init(p)
    mems = {"XOR 2-3-1 step": {}}
    for method in ("manual", "autodiff"):
        c = fn.train_step(net, loss, opt, method=method).lower(p, s, x, y).compile()
        mems["XOR 2-3-1 step"][method] = memory(c)
    for case in mlp_cases:  # on GPU the bfloat16 variant has the same title up to ":"
        dtype = case.get("dtype", "float32")
        name = case["title"].split(":")[0] + ("" if dtype == "float32" else f", {dtype}")
        mems[name] = case["memory"]
    for name, m in mems.items():
        for method in ("manual", "autodiff"):
            rows.append({"impl": f"{name}, {method}", **m[method]})
    ratios = {name: (m["manual"]["temp"] / m["autodiff"]["temp"] if m["autodiff"]["temp"]
                     else (1.0 if m["manual"]["temp"] == 0 else float("inf")))
              for name, m in mems.items()}
    return {"title": "5. compiled train-step memory (bytes, XLA memory_analysis)",
            "rows": rows, "temp_ratio_manual_over_autodiff": ratios}

"""The ``fnnet`` command line.

::

    fnnet xor [flags]                        the XOR recipe (= python examples/xor.py)
    fnnet gradcheck [--only NAME ...]        check every built-in layer and loss
    fnnet train digits [flags]               softmax MLP on the bundled digits
    fnnet train breast-cancer [flags]        sigmoid/BCE MLP on the bundled breast-cancer data
    fnnet vanishing [flags]                  deep sigmoid vs ReLU: per-layer gradient norms

Every subcommand has ``--help``. Exit codes: 0 success, 1 a check failed or an
optional dependency is missing, 2 bad command-line arguments (argparse's usage
message, never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

# subcommand -> module with build_parser()/main(argv); "train" datasets likewise
DEMOS = {"xor": "fnnet.demos.xor", "vanishing": "fnnet.demos.vanishing"}
DATASETS = {"digits": "fnnet.demos.digits", "breast-cancer": "fnnet.demos.breast_cancer"}


def _version() -> str:
    from fnnet import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnnet",
        description="fnnet: neural networks on JAX with every gradient written by hand.",
        epilog="Run `fnnet COMMAND --help` for the flags of a command.")
    parser.add_argument("--version", action="version", version=f"fnnet {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # delegated commands: their own parser handles the flags (and --help)
    sub.add_parser("xor", add_help=False, help="train the XOR recipe (same as examples/xor.py)")
    sub.add_parser("gradcheck", add_help=False,
                   help="check every built-in layer and loss: manual vs autodiff vs float64 "
                        "finite differences")
    t = sub.add_parser(
        "train", help="train an MLP on a bundled data set and print test metrics",
        description="Train on a data set bundled with scikit-learn (no download). "
                    "Run `fnnet train DATASET --help` for its flags.")
    t.add_argument("dataset", choices=sorted(DATASETS), help="the data set")
    t.add_argument("flags", nargs=argparse.REMAINDER, help="flags for the data set's trainer")
    sub.add_parser("vanishing", add_help=False,
                   help="deep sigmoid vs ReLU network: per-layer gradient norms and training")
    return parser


def gradcheck_parser(prog: str = "fnnet gradcheck") -> argparse.ArgumentParser:
    g = argparse.ArgumentParser(
        prog=prog,
        description="Check the hand-written backward of every built-in layer and loss against "
                    "jax.vjp and float64 central finite differences; print a pass/fail table. "
                    "Layers are discovered from fnnet's namespace. Exit code 1 if any check fails.")
    g.add_argument("--only", nargs="+", metavar="NAME",
                   help="check only these layers/losses (case-insensitive names, shell "
                        "wildcards allowed), e.g. --only Dense Conv2D 'softmax*'")
    g.add_argument("--seed", type=int, default=0, help="seed of inputs, params and directions")
    g.add_argument("--verbose", "-v", action="store_true", help="print each per-leaf report too")
    g.add_argument("--list", action="store_true", help="list what would be checked, check nothing")
    return g


def _delegate(module: str, argv, prog: str) -> int:
    from fnnet.demos._common import MissingExtra

    mod = importlib.import_module(module)
    kwargs = {"prog": prog} if "prog" in inspect.signature(mod.main).parameters else {}
    try:
        return int(mod.main(argv, **kwargs) or 0)
    except MissingExtra as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


def gradcheck(argv=None, prog: str = "fnnet gradcheck") -> int:
    """``fnnet gradcheck``: 0 when every check passes, 1 otherwise."""
    from fnnet.demos import gradcheck_all

    args = gradcheck_parser(prog).parse_args(argv)

    if args.list:
        for case in gradcheck_all.all_cases(seed=args.seed):
            print(f"{case.kind:5s}  {case.name}" + (f"  (skipped: {case.skip})" if case.skip else ""))
        return 0
    results = gradcheck_all.check_all(only=args.only, seed=args.seed, verbose=args.verbose)
    if not results:
        print(f"fnnet gradcheck: nothing matches --only {' '.join(args.only)}", file=sys.stderr)
        return 1
    return 1 if any(r.failed for r in results) else 0


def main(argv=None) -> int:
    """Entry point of the ``fnnet`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in DEMOS:
            return _delegate(DEMOS[argv[0]], argv[1:], f"fnnet {argv[0]}")
        if argv and argv[0] == "gradcheck":
            return gradcheck(argv[1:])
        if len(argv) >= 2 and argv[0] == "train" and argv[1] in DATASETS:
            return _delegate(DATASETS[argv[1]], argv[2:], f"fnnet train {argv[1]}")
        build_parser().parse_args(argv)  # --help, --version, or a usage error (exit 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

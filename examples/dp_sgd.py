"""DP-SGD (per-example clipping + Gaussian noise) on breast cancer: test accuracy
against the noise multiplier. No privacy accounting (epsilon is not computed).

The code lives in fnnet/demos/dp_sgd.py.

    python examples/dp_sgd.py                      # sigmas 0, 0.5, 1, 2, 4 and a non-private baseline
    python examples/dp_sgd.py --plot dp.png        # + accuracy curves
    python examples/dp_sgd.py --quick              # a 3-epoch smoke run
"""

from fnnet.demos.dp_sgd import main

if __name__ == "__main__":
    raise SystemExit(main())

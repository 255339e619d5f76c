"""Softmax MLP on scikit-learn's bundled 8x8 digits (no download); test accuracy ~97-98 %.

The code lives in fnnet/demos/digits.py (so `fnnet train digits` runs the same thing).

    python examples/digits_mlp.py                      # 40 epochs, prints test metrics
    python examples/digits_mlp.py --plot digits.png    # + loss and accuracy curves
    python examples/digits_mlp.py --quick              # a 3-epoch smoke run
"""

from fnnet.demos.digits import main

if __name__ == "__main__":
    raise SystemExit(main())

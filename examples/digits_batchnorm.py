"""The same deep MLP on scikit-learn's 8x8 digits with and without BatchNorm (same budget).

The code lives in fnnet/demos/digits_batchnorm.py.

    python examples/digits_batchnorm.py                  # 15 epochs each, prints both accuracies
    python examples/digits_batchnorm.py --plot bn.png    # + loss and test-accuracy curves
    python examples/digits_batchnorm.py --quick          # a 2-epoch smoke run
"""

from fnnet.demos.digits_batchnorm import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Sigmoid-output MLP with binary cross-entropy on scikit-learn's bundled breast-cancer data.

Features are standardized with the training split's statistics only; test
accuracy ~97-98 %. The code lives in fnnet/demos/breast_cancer.py (so
`fnnet train breast-cancer` runs the same thing).

    python examples/breast_cancer.py                      # 60 epochs, prints test metrics
    python examples/breast_cancer.py --plot cancer.png    # + loss and accuracy curves
    python examples/breast_cancer.py --quick              # a 10-epoch smoke run
"""

from fnnet.demos.breast_cancer import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Vanishing gradients: a deep sigmoid MLP (small normal init) vs a deep ReLU MLP (He init).

Prints the per-layer gradient norms of both (fnnet.diagnostics), then trains both
with plain SGD on the bundled digits. The code lives in fnnet/demos/vanishing.py.

    python examples/vanishing_gradients.py --plot vanishing.png
    python examples/vanishing_gradients.py --depth 20 --std 0.5
"""

from fnnet.demos.vanishing import main

if __name__ == "__main__":
    raise SystemExit(main())

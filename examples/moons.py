"""micrograd's demo: two moons, MLP 2-16-16-1, hinge loss + 1e-4 L2, SGD 1.0 -> 0.1, 100 steps.

The code lives in fnnet/demos/moons.py; read it there. Try:

    python examples/moons.py                    # micrograd's exact setup, one seed
    python examples/moons.py --seeds 20         # how it holds over initialisations
    python examples/moons.py --plot moons.png   # + loss curve and decision boundary
"""

from fnnet.demos.moons import main

if __name__ == "__main__":
    raise SystemExit(main())

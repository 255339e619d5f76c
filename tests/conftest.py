"""Shared test setup.

The suite runs in JAX's default float32 mode (what users get). Finite-difference
checks run in float64 inside ``fn.check_layer``/``fn.check_grads``, which enable
``jax_enable_x64`` locally for that part.
"""

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.dirname(__file__))

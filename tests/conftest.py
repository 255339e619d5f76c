"""Shared test setup.

The suite runs in JAX's default float32 mode (what users get). Finite-difference
checks run in float64 inside ``fn.check_layer``/``fn.check_grads``, which enable
``jax_enable_x64`` locally for that part.

Compile time, not arithmetic, is what the suite spends: its programs are tiny and each
runs a few times. So it compiles with JAX's ``jax_disable_most_optimizations`` (XLA's
cheap pipeline: a quarter less CPU for the whole run). What is checked (values,
gradients, shapes, errors, bit-for-bit resumes) does not depend on XLA's optimisation
level; to run the same tests with the full pipeline users get, set
``FNNET_TEST_FULL_XLA=1``. Set as an environment variable, so the examples, notebooks
and processes the tests start compile the same way.
"""

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("FNNET_TEST_FULL_XLA") != "1":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
sys.path.insert(0, os.path.dirname(__file__))

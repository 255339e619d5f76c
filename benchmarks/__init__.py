"""fnnet's benchmark suite: manual backprop vs jax.grad vs PyTorch vs NumPy.

Run ``python -m benchmarks`` (``--quick`` for a smoke run); see README.md.
"""

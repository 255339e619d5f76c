"""fnnet: neural networks on JAX with every gradient written by hand.

The contract (see the README and DESIGN.md):

* a :class:`Layer` is ``NamedTuple(init, fwd, bwd)`` of pure functions:
  ``init(key, input_shape) -> params``, ``fwd(params, x, *, key=None) -> (y, residuals)``,
  ``bwd(residuals, dy) -> (dparams, dx)`` (the hand-written VJP);
* a :class:`Loss` is ``NamedTuple(fwd, bwd)``: ``fwd(pred, target) -> (scalar, residuals)``,
  ``bwd(residuals, g) -> dpred``;
* params are plain pytrees; ``serial`` composes layers; ``value_and_grad`` runs the
  chain rule by hand (``method="autodiff"`` is ``jax.value_and_grad`` of the same
  forward); ``check_grads`` proves the two agree and match finite differences;
* optimizers follow optax's ``(init, update)`` contract; ``train_step`` is one jitted
  step; ``fit`` runs whole trainings compiled.
"""

from . import checkpoint, diagnostics, initializers, losses, metrics, optim, sharding
from .checkpoint import load, save
from .combinators import residual, serial
from .core import Layer, Loss, Static, apply, custom_vjp, named, vjp
from .debug import find_nonfinite
from .diagnostics import gradient_diagnostics
from .grad import value_and_grad
from .gradcheck import GradCheckReport, check_grads, check_layer
from .layers import (AvgPool2D, Conv2D, Dense, Dropout, Elu, Flatten, Gelu, Identity, LayerNorm,
                     LeakyRelu, LogSoftmax, MaxPool2D, Relu, Reshape, Sigmoid, Silu, Softmax,
                     Softplus, Tanh)
from .metrics import evaluate, predict
from .sweep import sweep
from .train import fit, train_step

__version__ = "0.1.0"

__all__ = [
    # the contract
    "Layer", "Loss", "Static", "named", "apply", "vjp", "custom_vjp",
    # combinators and layers
    "serial", "residual",
    "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape", "LayerNorm", "Dropout",
    "Identity", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu", "Softplus", "Silu",
    "Softmax", "LogSoftmax",
    # gradients and their checks
    "value_and_grad", "check_grads", "check_layer", "GradCheckReport",
    "gradient_diagnostics", "find_nonfinite",
    # training
    "train_step", "fit", "sweep", "evaluate", "predict", "save", "load",
    # modules
    "checkpoint", "diagnostics", "initializers", "losses", "metrics", "optim", "sharding",
]

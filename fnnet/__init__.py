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

from . import initializers, losses, optim
from .combinators import serial
from .combinators import residual
from .core import Layer, Loss, Static, apply, custom_vjp, named, vjp
from .grad import value_and_grad
from .gradcheck import GradCheckReport, check_grads, check_layer
from .layers import Dense, Identity, LeakyRelu, Relu, Sigmoid, Tanh
from .train import fit, train_step
from . import checkpoint, metrics, sharding
from .checkpoint import load, save
from .debug import find_nonfinite
from . import diagnostics
from .diagnostics import gradient_diagnostics
from .metrics import evaluate, predict
from .sweep import sweep
from .layers import (AvgPool2D, Conv2D, Dropout, Elu, Flatten, Gelu, LayerNorm, LogSoftmax,
                     MaxPool2D, Reshape, Silu, Softmax, Softplus)

__version__ = "0.1.0"

__all__ = [
    "Layer", "Loss", "Static", "named", "apply", "vjp", "custom_vjp", "serial",
    "Dense", "Identity", "LeakyRelu", "Relu", "Sigmoid", "Tanh",
    "value_and_grad", "check_grads", "check_layer", "GradCheckReport",
    "train_step", "fit", "initializers", "losses", "optim",
]
__all__ += ["residual", "AvgPool2D", "Conv2D", "Dropout", "Elu", "Flatten", "Gelu", "LayerNorm",
            "LogSoftmax", "MaxPool2D", "Reshape", "Silu", "Softmax", "Softplus"]
__all__ += ["checkpoint", "metrics", "sharding", "save", "load", "find_nonfinite", "evaluate",
            "predict", "sweep"]
__all__ += ["diagnostics", "gradient_diagnostics"]

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
from . import state
from .combinators import FanInConcat, FanInSum, FanOut, parallel, residual, serial
from .core import Layer, Loss, Static, apply, custom_vjp, forward, named, vjp
from .make_layer import make_layer
from .shapes import output_shape
from .state import init_state, update_state
from .summary import summary
from .tie import tie
from .debug import find_nonfinite
from .diagnostics import gradient_diagnostics
from .grad import value_and_grad
from .gradcheck import GradCheckReport, check_grads, check_layer, check_loss
from .layers import (AvgPool2D, Conv2D, Dense, Dropout, Elu, Flatten, Gelu, Identity, LayerNorm,
                     LeakyRelu, LogSoftmax, MaxPool2D, Relu, Reshape, Sigmoid, Silu, Softmax,
                     Softplus, Tanh)
from .layers import MultiHeadAttention, PositionalEmbedding, RMSNorm
from .layers import GroupedQueryAttention, RotaryEmbedding, SwiGLU
from . import models
from .blocks import LlamaBlock, MLPBlock, TransformerBlock
from .layers import BatchNorm, Unembed
from .layers import GRU, LSTM, Conv1D, ConvTranspose2D, Embedding, SimpleRNN
from .layers import Bidirectional, LastStep, MaxOverTime, MeanOverTime, SelectStep
from .inference import evaluate, predict
from . import dp, rules
from . import distributed
from .second_order import hvp
from .per_example import per_example_grad_norms, per_example_grads
from .regularizers import l2
from .sweep import sweep
from .mixed_precision import MixedPrecisionParams, mixed_precision
from .train import Reporting, Stopping, fit, train_step

__version__ = "0.1.0"

__all__ = [
    # the contract
    "Layer", "Loss", "Static", "named", "make_layer", "forward", "apply", "vjp", "custom_vjp",
    # combinators, graphs, ties and layer state
    "serial", "residual", "parallel", "FanOut", "FanInSum", "FanInConcat", "tie",
    "init_state", "update_state", "output_shape", "summary",
    "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape", "LayerNorm", "Dropout",
    "Identity", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu", "Softplus", "Silu",
    "Softmax", "LogSoftmax",
    "MultiHeadAttention", "RMSNorm", "PositionalEmbedding", "MLPBlock", "TransformerBlock",
    "GroupedQueryAttention", "RotaryEmbedding", "SwiGLU", "LlamaBlock",
    "BatchNorm", "Unembed",
    "Embedding", "SimpleRNN", "LSTM", "GRU", "Conv1D", "ConvTranspose2D",
    "LastStep", "SelectStep", "MeanOverTime", "MaxOverTime", "Bidirectional",
    # gradients and their checks
    "value_and_grad", "check_grads", "check_layer", "check_loss", "GradCheckReport",
    "gradient_diagnostics", "find_nonfinite",
    "per_example_grads", "per_example_grad_norms", "hvp",
    # training
    "train_step", "fit", "Stopping", "Reporting", "sweep", "evaluate", "predict", "save", "load",
    "l2",
    "mixed_precision", "MixedPrecisionParams",
    # modules
    "checkpoint", "diagnostics", "initializers", "losses", "metrics", "optim", "sharding", "state",
    "models", "dp", "rules", "distributed",
]

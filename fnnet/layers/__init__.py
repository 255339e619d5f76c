"""Built-in layers. Each file holds one layer (or one family): its fwd and bwd side by side."""

from .activations import (Elu, Gelu, Identity, LeakyRelu, LogSoftmax, Relu, Sigmoid, Silu, Softmax,
                          Softplus, Tanh, elementwise)
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .layernorm import LayerNorm
from .pooling import AvgPool2D, MaxPool2D
from .reshape import Flatten, Reshape

__all__ = [
    "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape", "LayerNorm", "Dropout",
    "Identity", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu", "Softplus", "Silu",
    "Softmax", "LogSoftmax", "elementwise",
]

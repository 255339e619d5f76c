"""Built-in layers. Each file holds one layer (or one family): its fwd and bwd side by side."""

from .activations import Identity, LeakyRelu, Relu, Sigmoid, Tanh, elementwise
from .dense import Dense
from .activations import Elu, Gelu, LogSoftmax, Silu, Softmax, Softplus
from .conv import Conv2D
from .dropout import Dropout
from .layernorm import LayerNorm
from .pooling import AvgPool2D, MaxPool2D
from .reshape import Flatten, Reshape

__all__ = ["Dense", "Identity", "LeakyRelu", "Relu", "Sigmoid", "Tanh", "elementwise"]
__all__ += ["Elu", "Gelu", "LogSoftmax", "Silu", "Softmax", "Softplus", "Conv2D", "Dropout",
            "LayerNorm", "AvgPool2D", "MaxPool2D", "Flatten", "Reshape"]

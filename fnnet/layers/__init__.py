"""Built-in layers. Each file holds one layer (or one family): its fwd and bwd side by side."""

from .activations import Identity, LeakyRelu, Relu, Sigmoid, Tanh, elementwise
from .dense import Dense

__all__ = ["Dense", "Identity", "LeakyRelu", "Relu", "Sigmoid", "Tanh", "elementwise"]

"""Built-in layers. Each file holds one layer (or one family): its fwd and bwd side by side."""

from .attention import MultiHeadAttention
from .activations import (Elu, Gelu, Identity, LeakyRelu, LogSoftmax, Relu, Sigmoid, Silu, Softmax,
                          Softplus, Tanh, elementwise)
from .batchnorm import BatchNorm
from .bidirectional import Bidirectional
from .conv import Conv2D
from .conv1d import Conv1D
from .conv_transpose import ConvTranspose2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .gqa import GroupedQueryAttention
from .layernorm import LayerNorm
from .pooling import AvgPool2D, MaxPool2D
from .recurrent import GRU, LSTM, SimpleRNN
from .positional import PositionalEmbedding
from .rmsnorm import RMSNorm
from .reshape import Flatten, Reshape
from .rope import RotaryEmbedding
from .swiglu import SwiGLU
from .sequence_pooling import LastStep, MaxOverTime, MeanOverTime, SelectStep
from .unembed import Unembed

__all__ = [
    "BatchNorm", "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape", "LayerNorm", "Dropout",
    "Identity", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu", "Softplus", "Silu",
    "Softmax", "LogSoftmax", "elementwise", "Unembed",
    "MultiHeadAttention", "RMSNorm", "PositionalEmbedding",
    "Embedding", "SimpleRNN", "LSTM", "GRU", "Conv1D", "ConvTranspose2D",
    "GroupedQueryAttention", "RotaryEmbedding", "SwiGLU",
    "LastStep", "SelectStep", "MeanOverTime", "MaxOverTime", "Bidirectional",
]

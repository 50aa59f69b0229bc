"""Vectorised forward/backward kernels on the Array API (no loops over data).

``conv2d_forward``, ``max_pool2d_forward`` and ``avg_pool2d_forward`` return the
output and a cache that the matching ``*_backward`` takes with the upstream
gradient; the linear and padding kernels need only the input (or nothing) for
backward. The activation kernels (``*_forward`` in activation.py) return the output
and its element-wise derivative; ``erf`` / ``erfc`` fill the standard's gap. Loops run
only over kernel offsets.
"""

from .activation import (
    erf,
    erfc,
    gelu_forward,
    leaky_relu_forward,
    sigmoid,
    sigmoid_forward,
    tanh_forward,
)
from .conv import conv2d_backward, conv2d_forward, conv_output_size
from .linear import linear_backward, linear_forward
from .padding import zero_pad2d_backward, zero_pad2d_forward
from .pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from .softmax import log_softmax, softmax

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "erf",
    "erfc",
    "gelu_forward",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "sigmoid",
    "sigmoid_forward",
    "softmax",
    "tanh_forward",
    "zero_pad2d_backward",
    "zero_pad2d_forward",
]

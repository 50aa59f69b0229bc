"""Vectorised forward/backward kernels on the Array API (no loops over data).

``conv2d_forward`` and ``max_pool2d_forward`` return the output and a cache that
the matching ``*_backward`` takes with the upstream gradient; the linear and
padding kernels need only the input (or nothing) for backward. Loops run only
over kernel offsets.
"""

from .conv import conv2d_backward, conv2d_forward, conv_output_size
from .linear import linear_backward, linear_forward
from .padding import zero_pad2d_backward, zero_pad2d_forward
from .pooling import max_pool2d_backward, max_pool2d_forward
from .softmax import log_softmax, softmax

__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "softmax",
    "zero_pad2d_backward",
    "zero_pad2d_forward",
]

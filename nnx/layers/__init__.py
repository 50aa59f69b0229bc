"""The layers: images are NCHW at every public boundary; an empty batch is refused with a
ValueError naming the layer and the input shape, as CrossEntropyLoss refuses one."""

from .activation import GELU, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .normalization import BatchNorm1d, BatchNorm2d
from .padding import ZeroPad2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .residual import Residual

__all__ = ["GELU", "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d",
           "Dropout", "Flatten", "LeakyReLU", "Linear", "MaxPool2d", "ReLU", "Residual", "Sigmoid",
           "Tanh", "ZeroPad2d"]

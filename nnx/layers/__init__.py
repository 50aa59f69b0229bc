"""The layers of DESIGN.md §5 (NCHW at every public boundary; an empty batch is refused
with a ValueError naming the layer and the input shape, as CrossEntropyLoss refuses one)."""

from .activation import Flatten, ReLU
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .normalization import BatchNorm1d, BatchNorm2d
from .padding import ZeroPad2d
from .pooling import MaxPool2d

__all__ = ["BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Linear", "MaxPool2d",
           "ReLU", "ZeroPad2d"]

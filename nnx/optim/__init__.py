"""Optimizers: PyTorch's SGD and the seed report's momentum form."""

from .moment_gd import MomentGD
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["MomentGD", "Optimizer", "SGD"]

"""Optimizers: PyTorch's SGD, Adam, AdamW and RMSprop, the course report's momentum form
(MomentGD), parameter-group recipes and gradient clipping."""

from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .groups import weight_decay_groups
from .moment_gd import MomentGD
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Adam", "AdamW", "MomentGD", "Optimizer", "RMSprop", "SGD", "clip_grad_norm_",
           "clip_grad_value_", "weight_decay_groups"]

"""PyTorch's own implementation of nnx's benchmark models (the reference).

Same layers, shapes and parameter counts as ``nnx.models.MLP((784, 600, 10))``,
``nnx.models.LeNet5()``, ``nnx.models.WideCNN()`` and ``nnx.models.ConvNet()``; trained with
``torch.optim.SGD`` and ``F.cross_entropy``, autograd doing the backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def mlp() -> nn.Module:
    """784 → 600 → ReLU → 10 (inputs flattened first)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 600), nn.ReLU(), nn.Linear(600, 10))


def lenet5() -> nn.Module:
    """conv 1→6 5×5 pad 2, ReLU, pool 2 → conv 6→16 5×5, ReLU, pool 2 → 400→120→84→10."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def wide_cnn() -> nn.Module:
    """conv 1→32 3×3 pad 1, ReLU, pool 2 → conv 32→64 3×3 pad 1, ReLU, pool 2 → 3136→128→10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def convnet(width: int = 32, dropout: float = 0.3, in_channels: int = 1,
            num_classes: int = 10) -> nn.Module:
    """nnx.models.ConvNet: conv–BN–ReLU ×2, pool, ×2, pool, ×1, global average pooling,
    dropout, linear (same layer order, so the state_dict names agree)."""
    def cbr(a: int, b: int) -> list[nn.Module]:
        return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

    w = width
    return nn.Sequential(*cbr(in_channels, w), *cbr(w, w), nn.MaxPool2d(2), *cbr(w, 2 * w),
                         *cbr(2 * w, 2 * w), nn.MaxPool2d(2), *cbr(2 * w, 4 * w),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(4 * w, num_classes))


MODELS: dict[str, Callable[[], nn.Module]] = {"MLP": mlp, "LeNet5": lenet5, "WideCNN": wide_cnn,
                                              "ConvNet": convnet}


def build(name: str, device: Any = "cpu") -> nn.Module:
    """The reference model ``name`` (a key of MODELS) in float32 on ``device``."""
    return MODELS[name]().to(device=device, dtype=torch.float32)


def make_step(model: nn.Module, lr: float, momentum: float,
              weight_decay: float) -> Callable[[Any, Any], Any]:
    """One training step ``step(x, y) -> loss`` (zero grads, forward, loss, backward, SGD)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Ready-made networks: the seed's MLP and LeNet-5, and a wider CNN, for square images of
any size (28×28 digits, 32×32 CIFAR-10 images, ...) and channel count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backends import Backend
from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from .module import Sequential


class MLP(Sequential):
    """Linear → ReLU → … → Linear over ``sizes`` (e.g. (784, 600, 10)).

    Input (B, sizes[0]) or images (B, C, H, W) with C·H·W = sizes[0] (flattened
    first); output logits (B, sizes[-1]). ``weight_decay`` goes on every weight.
    """

    def __init__(self, sizes: Sequence[int] = (784, 600, 10), weight_decay: float | None = None,
                 *, dtype: str = "float32", backend: str | Backend | None = None) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes needs at least an input and an output size, got {sizes}")
        layers: list[Any] = [Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(a, b, weight_decay, dtype=dtype, backend=backend))
            if i < len(sizes) - 2:
                layers.append(ReLU())
        super().__init__(*layers)
        self.config = {"name": "MLP", "sizes": sizes, "weight_decay": weight_decay}


def _input_size(model: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{model}: input_size must be an int >= {minimum} (the images' height "
                         f"and width), got {value!r}")
    return value


class LeNet5(Sequential):
    """LeNet-5 (ReLU and max pooling, as commonly trained today) for ``in_channels`` ×
    s × s images (s = ``input_size``, 28 for MNIST, 32 for CIFAR-10).

    conv in→6 5×5 pad 2, ReLU, pool 2 → conv 6→16 5×5, ReLU, pool 2 →
    16·k·k → 120 → 84 → ``num_classes``, with k = (s/2 − 4)/2 (5 for s = 28).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 weight_decay: float | None = None, *, input_size: int = 28,
                 dtype: str = "float32", backend: str | Backend | None = None) -> None:
        k = (_input_size("LeNet5", input_size, 12) // 2 - 4) // 2
        kw: dict[str, Any] = {"dtype": dtype, "backend": backend}
        super().__init__(
            Conv2d(in_channels, 6, 5, padding=2, weight_decay=weight_decay, **kw), ReLU(),
            MaxPool2d(2),
            Conv2d(6, 16, 5, weight_decay=weight_decay, **kw), ReLU(), MaxPool2d(2),
            Flatten(),
            Linear(16 * k * k, 120, weight_decay, **kw), ReLU(),
            Linear(120, 84, weight_decay, **kw), ReLU(),
            Linear(84, num_classes, weight_decay, **kw),
        )
        self.config = {"name": "LeNet5", "num_classes": num_classes, "in_channels": in_channels,
                       "input_size": input_size, "weight_decay": weight_decay}


class WideCNN(Sequential):
    """conv in→32 3×3 pad 1, ReLU, pool 2 → conv 32→64 3×3 pad 1, ReLU, pool 2 →
    64·(s/4)² → ``hidden`` (128) → ``num_classes``, for ``in_channels`` × s × s images
    (s = ``input_size``; 3136 inputs to the first Linear for 28×28)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, hidden: int = 128,
                 weight_decay: float | None = None, *, input_size: int = 28,
                 dtype: str = "float32", backend: str | Backend | None = None) -> None:
        k = _input_size("WideCNN", input_size, 4) // 4
        kw: dict[str, Any] = {"dtype": dtype, "backend": backend}
        super().__init__(
            Conv2d(in_channels, 32, 3, padding=1, weight_decay=weight_decay, **kw), ReLU(),
            MaxPool2d(2),
            Conv2d(32, 64, 3, padding=1, weight_decay=weight_decay, **kw), ReLU(), MaxPool2d(2),
            Flatten(),
            Linear(64 * k * k, hidden, weight_decay, **kw), ReLU(),
            Linear(hidden, num_classes, weight_decay, **kw),
        )
        self.config = {"name": "WideCNN", "num_classes": num_classes, "in_channels": in_channels,
                       "hidden": hidden, "input_size": input_size, "weight_decay": weight_decay}


MODELS = {"MLP": MLP, "LeNet5": LeNet5, "WideCNN": WideCNN}


def for_images(name: str, shape: tuple[int, int, int], num_classes: int, *,
               dtype: str = "float32", backend: str | Backend | None = None) -> Sequential:
    """The model ``name`` (``"MLP"``, ``"LeNet5"``, ``"WideCNN"``) for images of
    ``shape`` (C, H, W), H = W (an MLP 784-600-10 for 1×28×28)."""
    c, h, w = shape
    if h != w:
        raise ValueError(f"{name}: expects square images, got {h}×{w}")
    if name == "MLP":
        return MLP((c * h * w, 600, num_classes), dtype=dtype, backend=backend)
    return MODELS[name](num_classes, c, input_size=h, dtype=dtype, backend=backend)
CLI_NAMES = {"mlp": "MLP", "lenet5": "LeNet5", "lenet": "LeNet5", "widecnn": "WideCNN",
             "wide": "WideCNN", "cnn": "WideCNN"}


def build_model(config: dict[str, Any], *, dtype: str = "float32",
                backend: str | Backend | None = None) -> Sequential:
    """Rebuild a model from its ``config`` dict (as stored in checkpoints)."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**cfg, dtype=dtype, backend=backend)


__all__ = ["MLP", "LeNet5", "WideCNN", "build_model", "for_images"]

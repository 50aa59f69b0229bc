"""Ready-made networks for square images of any size (28×28 digits, 32×32 CIFAR-10
images, ...) and channel count: the course report's MLP and LeNet-5, a wider CNN, the
CIFAR-style ResNets of He et al. (2016) and a batch-normalised ConvNet for digits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backends import Backend
from .layers import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
)
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


def _conv_bn_relu(c_in: int, c_out: int, stride: int, kw: dict[str, Any]) -> list[Any]:
    return [Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, **kw),
            BatchNorm2d(c_out, **kw), ReLU()]


def basic_block(c_in: int, c_out: int, stride: int, **kw: Any) -> Sequential:
    """ResNet's basic block: ReLU(F(x) + S(x)) with F = conv3×3(stride)–BN–ReLU–conv3×3–BN and
    S the identity, or a projection conv1×1(stride)–BN when the shape changes."""
    block = Sequential(*_conv_bn_relu(c_in, c_out, stride, kw),
                       Conv2d(c_out, c_out, 3, padding=1, bias=False, **kw), BatchNorm2d(c_out, **kw))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False, **kw),
                              BatchNorm2d(c_out, **kw))
    return Sequential(Residual(block, shortcut), ReLU())


class ResNet(Sequential):
    """The CIFAR ResNet of He et al. (2016), depth = 6n + 2 (8, 14, 20, 32, ...).

    conv3×3 in→16 (no bias)–BN–ReLU → three stages of n basic blocks with 16, 32 and 64
    channels (the first block of stages 2 and 3 has stride 2 and a projection shortcut,
    conv1×1 stride 2–BN) → global average pooling → Linear(64, ``num_classes``).
    Input (B, ``in_channels``, H, W), any H, W ≥ 8; output logits (B, ``num_classes``).
    """

    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10, *,
                 dtype: str = "float32", backend: str | Backend | None = None) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet: depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got "
                             f"{depth!r}")
        n = (depth - 2) // 6
        kw: dict[str, Any] = {"dtype": dtype, "backend": backend}
        layers: list[Any] = _conv_bn_relu(in_channels, 16, 1, kw)
        c_in = 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(basic_block(c_in, c_out, stride, **kw))
                c_in = c_out
        layers += [AdaptiveAvgPool2d(1), Flatten(), Linear(64, num_classes, **kw)]
        super().__init__(*layers)
        self.config = {"name": "ResNet", "depth": depth, "in_channels": in_channels,
                       "num_classes": num_classes}


class ConvNet(Sequential):
    """A batch-normalised convolutional net for digits (w = ``width``):

    [conv3×3 in→w–BN–ReLU, conv3×3 w→w–BN–ReLU, max-pool 2] →
    [conv3×3 w→2w–BN–ReLU, conv3×3 2w→2w–BN–ReLU, max-pool 2] → conv3×3 2w→4w–BN–ReLU →
    global average pooling → Dropout(``dropout``) → Linear(4w, ``num_classes``).
    Input (B, ``in_channels``, H, W), H, W ≥ 4 (28×28 digits: 7×7 before the pooling).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32,
                 dropout: float = 0.3, *, dtype: str = "float32",
                 backend: str | Backend | None = None) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"ConvNet: width must be a positive int, got {width!r}")
        kw: dict[str, Any] = {"dtype": dtype, "backend": backend}
        w = width
        super().__init__(
            *_conv_bn_relu(in_channels, w, 1, kw), *_conv_bn_relu(w, w, 1, kw), MaxPool2d(2),
            *_conv_bn_relu(w, 2 * w, 1, kw), *_conv_bn_relu(2 * w, 2 * w, 1, kw), MaxPool2d(2),
            *_conv_bn_relu(2 * w, 4 * w, 1, kw),
            AdaptiveAvgPool2d(1), Flatten(), Dropout(dropout), Linear(4 * w, num_classes, **kw),
        )
        self.config = {"name": "ConvNet", "in_channels": in_channels, "num_classes": num_classes,
                       "width": width, "dropout": dropout}


MODELS = {"MLP": MLP, "LeNet5": LeNet5, "WideCNN": WideCNN, "ResNet": ResNet, "ConvNet": ConvNet}
#: ``nnx train --model`` names: (class name, fixed arguments).
CLI_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": ("MLP", {}), "lenet5": ("LeNet5", {}), "widecnn": ("WideCNN", {}),
    "resnet8": ("ResNet", {"depth": 8}), "resnet20": ("ResNet", {"depth": 20}),
    "convnet": ("ConvNet", {}),
}


def for_images(name: str, shape: tuple[int, int, int], num_classes: int, *,
               dtype: str = "float32", backend: str | Backend | None = None,
               **kwargs: Any) -> Sequential:
    """The model ``name`` (a key of :data:`MODELS`) for images of ``shape`` (C, H, W),
    H = W: an MLP 784-600-10 for 1×28×28, LeNet-5 / WideCNN sized for H, a ResNet or
    ConvNet with ``in_channels`` = C; ``kwargs`` go to the class (e.g. ``depth=8``)."""
    c, h, w = shape
    if h != w:
        raise ValueError(f"{name}: expects square images, got {h}×{w}")
    if name == "MLP":
        return MLP((c * h * w, 600, num_classes), dtype=dtype, backend=backend)
    if name in ("LeNet5", "WideCNN"):
        return MODELS[name](num_classes, c, input_size=h, dtype=dtype, backend=backend)
    return MODELS[name](in_channels=c, num_classes=num_classes, dtype=dtype, backend=backend,
                        **kwargs)


def build_model(config: dict[str, Any], *, dtype: str = "float32",
                backend: str | Backend | None = None) -> Sequential:
    """Rebuild a model from its ``config`` dict (as stored in checkpoints)."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**cfg, dtype=dtype, backend=backend)


__all__ = ["MLP", "ConvNet", "LeNet5", "ResNet", "WideCNN", "basic_block", "build_model", "for_images"]

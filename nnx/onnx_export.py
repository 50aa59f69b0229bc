"""Export an nnx model to ONNX: ``nnx.export_onnx(model, path, input_shape, normalize=None)``.

    >>> import nnx
    >>> model = nnx.load_model("runs/latest/best.safetensors")
    >>> nnx.export_onnx(model, "lenet5.onnx", (1, 28, 28), normalize=((0.1307,), (0.3081,)))

The graph is built node by node with the ``onnx`` package from the model's layers
(no tracing through another framework) and checked with ``onnx.checker.check_model``:

==================  =================================================================
nnx layer           ONNX
==================  =================================================================
Sequential          its layers in order (nested Sequentials and models alike)
Residual            the block's and the shortcut's (or the identity's) outputs, ``Add``
Linear              ``Gemm`` (nnx's weight is (in, out): Y = X·W + b, no transpose)
Conv2d              ``Conv`` (same weight layout, zero padding)
ZeroPad2d           ``Pad`` (constant 0)
MaxPool2d           ``MaxPool``
AvgPool2d           ``AveragePool`` with ``count_include_pad=1``
AdaptiveAvgPool2d   ``GlobalAveragePool`` for output size 1, else ``AveragePool`` with
                    kernel = stride = input size / output size (sizes that divide)
ReLU, LeakyReLU,    ``Relu``, ``LeakyRelu``, ``Sigmoid``, ``Tanh``
Sigmoid, Tanh
GELU                ``Gelu`` from opset 20; below it, its formula: x/2·(1 + erf(x/√2))
                    (``Erf``) or, approximate="tanh", x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))
BatchNorm1d/2d      ``BatchNormalization`` in inference form (the running statistics)
Flatten             ``Flatten`` (axis 1)
Dropout             nothing (the identity, as in eval mode)
==================  =================================================================

The graph's input ``"input"`` is float32 of shape (batch, *input_shape) with a dynamic
batch axis; its output ``"logits"`` is float32 (batch, num_classes), the model's eval-mode
output (apply a softmax for probabilities). With ``normalize`` = (mean, std), one value
per channel, the graph starts with (x − mean) / std per channel, so that it takes what the
data loader gives before normalising: image pixels scaled to [0, 1] (uint8 / 255). The
graph computes in float32 (a float64 model's weights are rounded to float32).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import backends as _backends
from .atomic import atomic_writer
from .layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sigmoid,
    Tanh,
    ZeroPad2d,
)
from .module import Module, Sequential, backend_of

#: The lowest and the default opset (BatchNormalization, Pad and friends in their modern forms).
MIN_OPSET = 17
#: ONNX's Gelu operator exists from this opset on.
GELU_OPSET = 20
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SUPPORTED = ("Sequential", "Residual", "Linear", "Conv2d", "ZeroPad2d", "MaxPool2d", "AvgPool2d",
             "AdaptiveAvgPool2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "BatchNorm1d",
             "BatchNorm2d", "Flatten", "Dropout")
_CONTAINERS = (Sequential, Residual)
_LEAVES = (Linear, Conv2d, ZeroPad2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, ReLU, LeakyReLU,
           Sigmoid, Tanh, GELU, BatchNorm1d, BatchNorm2d, Flatten, Dropout)


def _onnx() -> Any:
    """The ``onnx`` package, or an ImportError that says how to install it."""
    try:
        import onnx
        import onnx.checker  # noqa: F401
        import onnx.helper  # noqa: F401
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'nnx-array[onnx]' "
                          "(or pip install onnx onnxruntime)") from None
    return onnx


def normalization(normalize: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``normalize`` as (mean, std) per channel, or None.

    Accepts None, a (mean, std) pair of sequences, an ``nnx.data.transforms.Normalize``
    or a ``Compose`` of them, or such a transform's config (what checkpoints record under
    ``config.transforms.eval``, e.g. ``{"name": "Compose", "transforms": [{"name":
    "Normalize", "mean": [...], "std": [...]}]}``). Several Normalize steps are folded
    into one. ValueError for anything else (e.g. a random augmentation).
    """
    from .data import transforms as T

    if normalize is None:
        return None
    if isinstance(normalize, Mapping):
        try:
            normalize = T.from_config(dict(normalize))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"normalize: {exc}") from None
    if isinstance(normalize, T.Transform):
        steps = normalize.transforms if isinstance(normalize, T.Compose) else [normalize]
        others = [type(s).__name__ for s in steps if not isinstance(s, T.Normalize)]
        if others:
            raise ValueError(f"normalize: only Normalize steps can be part of the exported "
                             f"graph, got {', '.join(others)}")
        if not steps:
            return None
        mean = np.zeros(len(steps[0].mean))
        std = np.ones(len(steps[0].std))
        for s in steps:  # ((x − m1)/s1 − m2)/s2 = (x − (m1 + m2·s1)) / (s1·s2)
            if len(s.mean) != len(mean):
                raise ValueError("normalize: the Normalize steps have different channel counts")
            mean = mean + np.asarray(s.mean) * std
            std = std * np.asarray(s.std)
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        norm = T.Normalize(normalize[0], normalize[1])  # its checks: finite, std > 0, lengths
        return norm.mean, norm.std
    raise ValueError(f"normalize must be None, (mean, std), a Normalize transform or its config, "
                     f"got {type(normalize).__name__}")


class _Graph:
    """The nodes and initializers of the graph being built, with unique names."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def name(self, base: str) -> str:
        base = base or "model"
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.name(base)
        array = np.array(value, dtype=dtype)  # a copy, C-contiguous
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: Sequence[str], where: str, **attrs: Any) -> str:
        out = self.name(f"{where}/{op}" if where else op)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def _host(x: Any) -> np.ndarray:
    return np.asarray(_backends.to_numpy(x))


def _own_forward(m: Module, base: type) -> bool:
    """Whether ``m``'s class keeps the forward of the nnx class it derives from (a subclass
    with its own forward computes something this exporter cannot know)."""
    return type(m).forward is base.forward


def _describe(path: str, m: Module) -> str:
    return f"layer {path!r} ({type(m).__name__})" if path else f"the model ({type(m).__name__})"


def _unsupported(path: str, m: Module, why: str) -> ValueError:
    return ValueError(f"export_onnx: cannot export {_describe(path, m)}: {why}")


def _emit(g: _Graph, m: Module, x: str, xv: Any, path: str) -> tuple[str, Any]:
    """Add the nodes computing module ``m`` on tensor ``x`` (whose value on a dummy batch
    is ``xv``, for shapes); returns (output tensor name, its value)."""
    for base in (*_CONTAINERS, *_LEAVES):
        if isinstance(m, base):
            if not _own_forward(m, base):
                raise _unsupported(path, m, f"it overrides {base.__name__}.forward, so its "
                                   "computation is unknown to the exporter")
            break
    else:
        raise _unsupported(path, m, f"no ONNX mapping for {type(m).__name__}; supported: "
                           f"{', '.join(SUPPORTED)}")
    prefix = f"{path}." if path else ""
    if isinstance(m, Sequential):
        for name, child in m.named_children():
            x, xv = _emit(g, child, x, xv, prefix + name)
        return x, xv
    if isinstance(m, Residual):
        yb, ybv = _emit(g, m.block, x, xv, prefix + "block")
        if m.shortcut is None:
            ys, ysv = x, xv
        else:
            ys, ysv = _emit(g, m.shortcut, x, xv, prefix + "shortcut")
        if tuple(ybv.shape) != tuple(ysv.shape):
            raise _unsupported(path, m, f"block output {tuple(ybv.shape)} and shortcut output "
                               f"{tuple(ysv.shape)} differ")
        return g.node("Add", [yb, ys], path), ybv + ysv
    yv = m(xv)  # the layer's own checks of its input, and the next layer's dummy input
    where = path
    if isinstance(m, Dropout):
        return x, yv
    if isinstance(m, Linear):
        inputs = [x, g.const(f"{prefix}weight", _host(m.weight.data))]
        if m.bias is not None:
            inputs.append(g.const(f"{prefix}bias", _host(m.bias.data)))
        return g.node("Gemm", inputs, where), yv
    if isinstance(m, Conv2d):
        inputs = [x, g.const(f"{prefix}weight", _host(m.weight.data))]
        if m.bias is not None:
            inputs.append(g.const(f"{prefix}bias", _host(m.bias.data)))
        ph, pw = m.padding
        return g.node("Conv", inputs, where, kernel_shape=list(m.kernel_size),
                      strides=list(m.stride), pads=[ph, pw, ph, pw]), yv
    if isinstance(m, ZeroPad2d):
        left, right, top, bottom = m.pad
        lead = [0] * (xv.ndim - 2)
        pads = g.const(f"{prefix}pads", [*lead, top, left, *lead, bottom, right], np.int64)
        return g.node("Pad", [x, pads], where, mode="constant"), yv
    if isinstance(m, (MaxPool2d, AvgPool2d)):
        ph, pw = m.padding
        attrs: dict[str, Any] = {"kernel_shape": list(m.kernel_size), "strides": list(m.stride),
                                 "pads": [ph, pw, ph, pw]}
        if isinstance(m, AvgPool2d):
            return g.node("AveragePool", [x], where, count_include_pad=1, **attrs), yv
        return g.node("MaxPool", [x], where, **attrs), yv
    if isinstance(m, AdaptiveAvgPool2d):
        h, w = int(xv.shape[2]), int(xv.shape[3])
        oh = h if m.output_size[0] is None else m.output_size[0]
        ow = w if m.output_size[1] is None else m.output_size[1]
        if (oh, ow) == (1, 1):
            return g.node("GlobalAveragePool", [x], where), yv
        if h % oh or w % ow:  # the layer itself refuses these; kept for clarity
            raise _unsupported(path, m, f"output size {oh}x{ow} does not divide {h}x{w}")
        kernel = [h // oh, w // ow]
        return g.node("AveragePool", [x], where, kernel_shape=kernel, strides=kernel), yv
    if isinstance(m, ReLU):
        return g.node("Relu", [x], where), yv
    if isinstance(m, LeakyReLU):
        return g.node("LeakyRelu", [x], where, alpha=float(m.negative_slope)), yv
    if isinstance(m, Sigmoid):
        return g.node("Sigmoid", [x], where), yv
    if isinstance(m, Tanh):
        return g.node("Tanh", [x], where), yv
    if isinstance(m, GELU):
        return _gelu(g, m.approximate, x, where), yv
    if isinstance(m, (BatchNorm1d, BatchNorm2d)):
        if m.running_mean is None:
            raise _unsupported(path, m, "without running statistics (track_running_stats="
                               "False) it normalises with each batch's own statistics in eval "
                               "mode, which has no ONNX inference form")
        n = m.num_features
        scale = _host(m.weight.data) if m.weight is not None else np.ones(n)
        shift = _host(m.bias.data) if m.bias is not None else np.zeros(n)
        inputs = [x, g.const(f"{prefix}weight", scale), g.const(f"{prefix}bias", shift),
                  g.const(f"{prefix}running_mean", _host(m.running_mean.data)),
                  g.const(f"{prefix}running_var", _host(m.running_var.data))]
        return g.node("BatchNormalization", inputs, where, epsilon=float(m.eps)), yv
    if isinstance(m, Flatten):
        return g.node("Flatten", [x], where, axis=1), yv
    raise _unsupported(path, m, "no ONNX mapping")  # unreachable: every leaf is handled above


def _gelu(g: _Graph, approximate: str, x: str, where: str) -> str:
    """GELU: ONNX's Gelu from opset 20, else its formula in elementary operators."""
    if g.opset >= GELU_OPSET:
        return g.node("Gelu", [x], where, approximate=approximate)
    half = g.const(f"{where}.half", 0.5)
    one = g.const(f"{where}.one", 1.0)
    if approximate == "none":  # x/2 · (1 + erf(x/√2))
        inner = g.node("Erf", [g.node("Mul", [x, g.const(f"{where}.inv_sqrt2",
                                                          1.0 / math.sqrt(2.0))], where)], where)
    else:  # x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))
        cube = g.node("Mul", [g.node("Mul", [x, x], where), x], where)
        poly = g.node("Add", [x, g.node("Mul", [cube, g.const(f"{where}.c", 0.044715)], where)],
                      where)
        inner = g.node("Tanh", [g.node("Mul", [poly, g.const(f"{where}.sqrt_2_over_pi",
                                                            math.sqrt(2.0 / math.pi))], where)],
                       where)
    return g.node("Mul", [g.node("Mul", [x, half], where), g.node("Add", [inner, one], where)],
                  where)


def _input_shape(input_shape: Any) -> tuple[int, ...]:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                            for s in shape):
        raise ValueError("export_onnx: input_shape must be the shape of one input without the "
                         f"batch axis, e.g. (1, 28, 28), got {input_shape!r}")
    return shape


def _opset(opset: Any, onnx: Any) -> int:
    newest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest} (the "
                         f"newest this onnx {onnx.__version__} knows), got {opset!r}")
    return opset


def export_onnx(model: Module, path: str | os.PathLike[str] | None, input_shape: Sequence[int],
                normalize: Any = None, *, opset: int = MIN_OPSET,
                metadata: Mapping[str, str] | None = None) -> Any:
    """Write ``model`` as an ONNX file at ``path`` (atomically; None: write nothing) and
    return the ``onnx.ModelProto``.

    ``input_shape``: one input without the batch axis, e.g. (1, 28, 28) for MNIST images
    or (784,) for flat vectors; the batch axis is dynamic. ``normalize``: None (the graph
    takes exactly what the model takes), or the per-channel (mean, std) of the data's
    normalisation, as a pair, a Normalize transform or a checkpoint's recorded
    ``config["transforms"]["eval"]``: the graph then starts with (x − mean) / std and
    takes pixels scaled to [0, 1]. ``opset``: 17 (default) up to the newest the onnx
    package knows; from 20, GELU is ONNX's Gelu. ``metadata``: extra str -> str entries
    for the model's ``metadata_props`` (nnx adds ``nnx_version``, ``input`` and, with
    ``normalize``, ``normalize``).

    The input is named ``"input"``, the output ``"logits"``. The model is run once in
    eval mode on a dummy batch to learn each layer's shapes (its train/eval flags are
    restored). Raises ValueError naming the layer for layers it cannot export (see
    :data:`SUPPORTED`), for an ``input_shape`` the model refuses, and ImportError when
    the onnx package is missing. The result passes ``onnx.checker.check_model``.
    """
    from . import __version__

    onnx = _onnx()
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx: model must be an nnx Module, got {type(model).__name__}")
    shape = _input_shape(input_shape)
    opset = _opset(opset, onnx)
    norm = normalization(normalize)
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in metadata.items()):
        raise ValueError("export_onnx: metadata must map str to str")
    g = _Graph(onnx, opset)
    x = INPUT_NAME
    if norm is not None:
        mean, std = norm
        channels = shape[0]
        if len(mean) != channels and len(mean) != 1:
            raise ValueError(f"export_onnx: normalize has {len(mean)} channel means but the "
                             f"input has {channels} channels (input_shape {shape})")
        const_shape = (1, len(mean)) + (1,) * (len(shape) - 1)
        x = g.node("Sub", [x, g.const("normalize.mean", np.reshape(mean, const_shape))],
                   "normalize")
        x = g.node("Div", [x, g.const("normalize.std", np.reshape(std, const_shape))],
                   "normalize")

    params = [p.data for p in model.parameters()]
    be = backend_of(params[0]) if params else None
    dtype = str(_host(params[0]).dtype) if params else "float32"
    dummy = np.zeros((1, *shape), dtype=dtype)
    xv = _backends.asarray(dummy, be) if be is not None else dummy
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        y, yv = _emit(g, model, x, xv, "")
    except (ValueError, TypeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if text.startswith("export_onnx"):
            raise
        raise ValueError(f"export_onnx: the model does not take inputs of shape (batch, "
                         f"{', '.join(map(str, shape))}): {text}") from None
    finally:
        for m, mode in modes:
            m.training = mode
    if y == INPUT_NAME:
        g.nodes.append(onnx.helper.make_node("Identity", [y], [OUTPUT_NAME], name=OUTPUT_NAME))
    else:
        last = g.nodes[-1]
        assert last.output[0] == y
        last.output[0] = OUTPUT_NAME
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__,
        [onnx.helper.make_tensor_value_info(INPUT_NAME, f32, ["batch", *shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, f32,
                                            ["batch", *(int(s) for s in yv.shape[1:])])],
        g.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="nnx",
                                   producer_version=__version__)
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)  # the widest runtime support
    what = (f"float32 (batch, {', '.join(map(str, shape))})"
            + (": pixels scaled to [0, 1], normalised in the graph" if norm is not None else
               ": what the nnx model takes"))
    proto.doc_string = f"{type(model).__name__} exported by nnx {__version__}; input {what}; " \
                       "output logits"
    props = {"nnx_version": __version__, "input": what,
             **({"normalize": json.dumps({"mean": norm[0], "std": norm[1]})} if norm else {}),
             **dict(metadata or {})}
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        with atomic_writer(path) as f:
            f.write(proto.SerializeToString())
    return proto


__all__ = ["SUPPORTED", "export_onnx", "normalization"]

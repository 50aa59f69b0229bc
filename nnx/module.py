"""Parameter, Buffer, Module and Sequential: the containers every layer builds on."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import backends as _backends
from ._array import array_namespace, device, dtype_name, namespace_of, shape_str
from .backend import device_scope, resolve_backend
from .backends import Backend


class Parameter:
    """A trainable array with its gradient.

    Attributes
    ----------
    data : array
        The value. Layers read ``.data`` at every forward; optimizers may rebind it.
    grad : array or None
        d(loss)/d(data) from the last ``backward`` (overwritten, not accumulated).
    weight_decay : float or None
        L2 coefficient λ for this parameter; ``None`` means "use the optimizer's".
    """

    __slots__ = ("data", "grad", "weight_decay")

    def __init__(self, data: Any, weight_decay: float | None = None) -> None:
        if weight_decay is not None and not weight_decay >= 0:
            raise ValueError(f"Parameter: weight_decay must be >= 0 or None, got {weight_decay!r}")
        self.data = data
        self.grad: Any = None
        self.weight_decay = None if weight_decay is None else float(weight_decay)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def __repr__(self) -> str:
        return (f"Parameter(shape={shape_str(self.data.shape)}, dtype={dtype_name(self.data.dtype)}"
                f", weight_decay={self.weight_decay})")


class Buffer:
    """A non-trainable array a module keeps as state (BatchNorm's running statistics).

    Buffers are in ``state_dict()`` and checkpoints under their attribute names and are
    moved by ``Module.to``; optimizers never see them (they are not Parameters). Layers
    may rebind ``.data`` (an update returns a new array).
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Buffer(shape={shape_str(self.data.shape)}, dtype={dtype_name(self.data.dtype)})"


class Module:
    """Base class of layers and models with explicit ``forward`` and ``backward``.

    ``forward(x)`` computes the output (and, in training mode, keeps what
    ``backward`` needs); ``backward(grad_out)`` returns d(loss)/d(input) and
    overwrites each parameter's ``.grad`` with d(loss)/d(parameter).
    Parameters and sub-modules are found among the instance's attributes, in the
    order they were assigned.
    """

    training: bool = True
    #: False for layers whose output couples the samples of a batch (BatchNorm) or draws
    #: random numbers (Dropout): a batch cannot be split across threads through them.
    splittable: bool = True

    # -- computation ------------------------------------------------------
    def forward(self, x: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def backward_params_only(self, grad_out: Any) -> None:
        """Set the parameters' gradients without returning d(loss)/d(input).

        What :class:`nnx.Trainer` (and the threaded batch split) call on a model, whose
        input (the data) needs no gradient, and what a Sequential calls on its first
        layer with parameters. This base version runs :meth:`backward` and drops the
        input gradient, so every Module supports it; modules that can skip that work
        override it (Sequential, Linear, Conv2d, BatchNorm, Residual), as PyTorch skips
        inputs that do not require grad.
        """
        self.backward(grad_out)

    def __call__(self, x: Any) -> Any:
        with device_scope(x):  # CuPy: allocate and launch on x's GPU, not the current one
            return self.forward(x)

    # -- structure --------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def modules(self) -> Iterator[Module]:
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) pairs with stable dotted names such as ``"0.weight"``.

        A Parameter shared by several layers (tied weights: two layer objects holding
        the same Parameter) is listed once, under its first name, so an optimizer updates
        it once. Each layer object may appear in a network only once.
        """
        seen: set[int] = set()
        for name, p in self._all_named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_named_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """(name, Buffer) pairs, e.g. ``"1.running_mean"``, each Buffer once."""
        seen: set[int] = set()
        for name, b in self._all_named_buffers(prefix):
            if id(b) not in seen:
                seen.add(id(b))
                yield name, b

    def _all_named_buffers(self, prefix: str) -> Iterator[tuple[str, Buffer]]:
        for name, value in vars(self).items():
            if isinstance(value, Buffer):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_named_buffers(prefix + name + ".")

    def buffers(self) -> list[Buffer]:
        return [b for _, b in self.named_buffers()]

    def _named_state(self) -> dict[str, Parameter | Buffer]:
        """Every Parameter and Buffer by its state_dict name."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- modes ------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode keeps activations for ``backward``; ``eval()`` keeps none."""
        for m in self.modules():
            m.training = bool(mode)
            if not mode:
                m.clear_cache()
        return self

    def eval(self) -> Module:
        return self.train(False)

    def clear_cache(self) -> None:
        """Drop activations kept for backward (layers override to free theirs)."""
        for key in [k for k in vars(self) if k.startswith("_cache")]:
            setattr(self, key, None)

    # -- state ------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, Any]:
        """Parameter and buffer name -> array (the live arrays, not copies): the parameters
        first, then the buffers (``running_mean``, ...)."""
        return OrderedDict((name, p.data) for name, p in self._named_state().items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays (from any backend) into the parameters and buffers, checking names,
        shapes and dtypes.

        With ``strict`` every parameter and buffer must be present and no extra key
        allowed. All problems are reported together in one ValueError; nothing is
        changed unless every check passes.
        """
        params = self._named_state()
        problems = []
        if strict:
            missing = [k for k in params if k not in state_dict]
            unexpected = [k for k in state_dict if k not in params]
            if missing:
                problems.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected keys: {', '.join(unexpected)}")
        for name, value in state_dict.items():
            if name not in params:
                continue
            p = params[name]
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                problems.append(f"{name}: a {type(value).__name__} in state_dict, not an array")
                continue
            shape = tuple(int(s) for s in value.shape)
            if shape != p.shape:
                problems.append(f"{name}: shape {shape_str(shape)} in state_dict, "
                                f"{shape_str(p.shape)} in model")
            if dtype_name(value.dtype) != dtype_name(p.dtype):
                problems.append(f"{name}: dtype {dtype_name(value.dtype)} in state_dict, "
                                f"{dtype_name(p.dtype)} in model")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, value in state_dict.items():
            if name in params:
                p = params[name]
                p.data = _backends.asarray(value, backend_of(p.data), copy=True)
                if isinstance(p, Parameter):
                    p.grad = None

    def to(self, backend: str | Backend | None = None, device: Any = None,
           dtype: str | None = None) -> Module:
        """Move every parameter and buffer to ``backend`` (a name or Backend) and/or cast
        the floating ones to ``dtype`` (integer buffers keep theirs).

        With only ``device``, arrays stay in their array library and move to that
        device (as PyTorch's ``.to(device)``). Returns ``self``; gradients and kept
        activations are dropped.
        """
        if dtype is not None and dtype not in ("float32", "float64"):
            raise ValueError(f"{type(self).__name__}.to: dtype must be 'float32' or 'float64', "
                             f"got {dtype!r}")
        target = resolve_backend(backend, device) if backend is not None else None
        for p in self._named_state().values():
            if target is not None:
                dest = target
            elif device is not None:
                dest = _backends.create_backend(_backends.array_library(p.data), device)
            else:
                dest = backend_of(p.data)
            # a move to another library copies (torch <-> NumPy on the CPU could share memory)
            moved = dest.name != _backends.array_library(p.data)
            cast = dtype if dtype_name(p.data.dtype).startswith("float") else None
            p.data = _backends.asarray(p.data, dest, dtype=cast, copy=moved)
            if isinstance(p, Parameter):
                p.grad = None
        for m in self.modules():
            m.clear_cache()
        return self

    # -- display ----------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in children]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def backend_of(x: Any) -> Backend:
    """The Backend (library and device) that array ``x`` lives on."""
    return _backends.backend_for(x)


class Sequential(Module):
    """Layers applied in order; ``backward`` runs them in reverse.

    Parameters are named ``"<index>.<name>"`` (``"0.weight"``, ``"0.bias"``, ...).

    On NumPy, a large batch through a splittable convolutional Sequential is split
    across threads, forward and backward (:mod:`nnx.parallel`): ``threads`` (None:
    ``nnx.parallel.set_num_threads``'s setting, ``"auto"`` by default) or an int.
    """

    threads: int | str | None = None

    def __init__(self, *layers: Module) -> None:
        seen: dict[int, int] = {}
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Module")
            if id(layer) in seen:
                raise ValueError(
                    f"Sequential: item {i} is the same {type(layer).__name__} object as item "
                    f"{seen[id(layer)]}; a layer keeps the activations of its one place for "
                    "backward, so use two layers (they may share a Parameter)")
            seen[id(layer)] = i
        self.layers = list(layers)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def forward(self, x: Any) -> Any:
        from .parallel import forget_split, splitter_for

        splitter = splitter_for(self, x) if self.layers and hasattr(x, "shape") else None
        if splitter is not None:
            try:
                return splitter.forward(x)
            except (TypeError, ValueError) as split_error:
                # the slices' checks name the slices' shapes: the whole batch's forward
                # raises the same error with the caller's shapes
                forget_split(self)
                self._forward_layers(x)
                raise split_error
        forget_split(self)
        return self._forward_layers(x)

    def _forward_layers(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """Backward through the layers in reverse; returns d(loss)/d(input).

        With ``need_input_grad=False`` it returns None and stops at the first layer
        that has parameters, which sets its gradients without computing the
        gradient of its input (layers before it have nothing to learn).
        """
        with device_scope(grad_out):  # CuPy: on the gradient's GPU, not the current one
            return self._backward(grad_out, need_input_grad)

    def _backward(self, grad_out: Any, need_input_grad: bool) -> Any:
        from .parallel import active_splitter

        splitter = active_splitter(self)
        if splitter is not None:
            return splitter.backward(grad_out, need_input_grad)
        layers = self.layers
        tied = TiedGradients(layers)
        if need_input_grad:
            for layer in reversed(layers):
                grad_out = tied.run(layer, layer.backward, grad_out)
            return grad_out
        first = next((i for i, layer in enumerate(layers) if layer.parameters()), len(layers))
        for layer in reversed(layers[first + 1:]):
            grad_out = tied.run(layer, layer.backward, grad_out)
        if first < len(layers):
            tied.run(layers[first], layers[first].backward_params_only, grad_out)
        return None

    def backward_params_only(self, grad_out: Any) -> None:
        self.backward(grad_out, need_input_grad=False)


class TiedGradients:
    """One backward pass through ``parts`` (modules) in which some Parameters are held by
    more than one part (tied weights): dL/dθ = Σ over the parts that use θ of their share.

    Each part's backward overwrites its parameters' ``.grad`` (the Module contract), so
    :meth:`run` adds back the shares of the parts that ran before it in this pass. With no
    tied Parameter, :meth:`run` only calls ``fn``."""

    def __init__(self, parts: Iterable[Module]) -> None:
        uses: dict[int, int] = {}
        for part in parts:
            for p in part.parameters():  # each part's own list holds a Parameter once
                uses[id(p)] = uses.get(id(p), 0) + 1
        self.tied = {key for key, n in uses.items() if n > 1}
        self._so_far: dict[int, Any] = {}  # id(Parameter) -> its summed gradient so far

    def run(self, part: Module, fn: Any, *args: Any) -> Any:
        if not self.tied:
            return fn(*args)
        params = [p for p in part.parameters() if id(p) in self.tied]
        out = fn(*args)
        for p in params:
            before = self._so_far.get(id(p))
            if before is not None and p.grad is not before:  # this part set its share
                p.grad = before if p.grad is None else before + p.grad  # a new array
            self._so_far[id(p)] = p.grad
        return out


def check_same_namespace(layer: Module, x: Any, ref: Any) -> Any:
    """The namespace of ``x``; TypeError with the fix when ``x`` and the layer's
    parameter ``ref`` belong to different array libraries or devices."""
    if type(x) is type(ref) and getattr(x, "device", None) == getattr(ref, "device", None):
        return namespace_of(x)  # the common case, without the slower checks below
    try:
        xp = array_namespace(x)
    except TypeError:
        raise TypeError(
            f"{layer!r}: input must be an array, got {type(x).__name__}; "
            "convert it with nnx.asarray(x)"
        ) from None
    lib_x = _backends.array_library(x)
    lib_p = _backends.array_library(ref)
    if lib_x != lib_p:
        raise TypeError(
            f"{layer!r}: input is a {lib_x} array but the layer's parameters are {lib_p} arrays; "
            f"move the batch with nnx.asarray(x, {lib_p!r}) or the model with model.to({lib_x!r})"
        )
    dx, dp = str(device(x)), str(device(ref))
    if dx != dp:
        raise TypeError(
            f"{layer!r}: input is on device {dx} but the layer's parameters are on {dp}; "
            "move one of them (nnx.asarray / model.to)"
        )
    return xp


def as_parameter_list(params: Module | Iterable[Parameter]) -> list[Parameter]:
    """A list of Parameters from a Module or an iterable of Parameters (validated)."""
    if isinstance(params, Module):
        out = params.parameters()
    else:
        out = list(params)
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise TypeError(f"expected nnx.Parameter objects, item {i} is {type(p).__name__}")
    if not out:
        raise ValueError("got an empty parameter list")
    return out

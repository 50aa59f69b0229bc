"""Residual connection: the sum of a block and a shortcut applied to the same input."""

from __future__ import annotations

from typing import Any

from .._array import dtype_name, shape_str
from ..module import Module, TiedGradients


class Residual(Module):
    """Y = block(X) + shortcut(X), with shortcut(X) = X when ``shortcut`` is None.

    Shapes: any input the block takes; block(X) and shortcut(X) must have the same
    shape (and dtype), which is the output's. Backward with G = d(loss)/dY:
    dX = block.backward(G) + shortcut.backward(G) (+ G itself for the identity), and
    each branch sets its own parameters' gradients. ``backward_params_only(G)`` sets
    the parameter gradients of both branches without computing dX.

    The branches are attributes ``block`` and ``shortcut``, so parameters are named
    ``"block.0.weight"``, ``"shortcut.0.weight"``, ... and ``train()`` / ``eval()``,
    ``to()`` and ``state_dict()`` reach them. A projection shortcut (ResNet's
    downsampling) is e.g. ``Sequential(Conv2d(c, 2c, 1, stride=2), BatchNorm2d(2c))``.
    """

    def __init__(self, block: Module, shortcut: Module | None = None) -> None:
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block must be a Module, got {type(block).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError("Residual: shortcut must be a Module or None (identity), got "
                            f"{type(shortcut).__name__}")
        if shortcut is not None:
            inside = {id(m) for m in block.modules()}
            shared = next((m for m in shortcut.modules() if id(m) in inside), None)
            if shared is not None:
                raise ValueError(
                    f"Residual: the same {type(shared).__name__} object is in both the block "
                    "and the shortcut; a layer keeps the activations of its one place for "
                    "backward, so use two layers (they may share a Parameter)")
        self.block = block
        self.shortcut = shortcut
        self._cache_out_shape: Any = None

    def _name(self) -> str:
        short = "identity" if self.shortcut is None else type(self.shortcut).__name__
        return f"Residual(block={type(self.block).__name__}, shortcut={short})"

    def forward(self, x: Any) -> Any:
        y = self.block(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(
                f"{self._name()}: block output of shape {shape_str(y.shape)} does not match "
                f"{'the input' if self.shortcut is None else 'shortcut output'} of shape "
                f"{shape_str(s.shape)} (input of shape {shape_str(x.shape)})")
        if y.dtype != s.dtype:
            raise TypeError(
                f"{self._name()}: block output dtype {dtype_name(y.dtype)} does not match "
                f"{'the input' if self.shortcut is None else 'shortcut output'} dtype "
                f"{dtype_name(s.dtype)}")
        self._cache_out_shape = tuple(int(n) for n in y.shape) if self.training else None
        return y + s  # a new array: neither branch's output (maybe kept for backward) changes

    def _check_backward(self, grad_out: Any) -> None:
        if self._cache_out_shape is None:
            raise RuntimeError(f"{self._name()}: backward() needs a forward() in training "
                               "mode first (eval mode keeps no activations)")
        if not hasattr(grad_out, "shape"):
            raise TypeError(f"{self._name()}: backward got a {type(grad_out).__name__}, "
                            "not an array")
        if tuple(int(s) for s in grad_out.shape) != self._cache_out_shape:
            raise ValueError(f"{self._name()}: backward got a gradient of shape "
                             f"{shape_str(grad_out.shape)}, expected the forward output's "
                             f"shape {shape_str(self._cache_out_shape)}")

    def backward(self, grad_out: Any) -> Any:
        self._check_backward(grad_out)
        if self.shortcut is None:
            return self.block.backward(grad_out) + grad_out
        tied = TiedGradients((self.block, self.shortcut))  # a Parameter both branches hold
        dx = tied.run(self.block, self.block.backward, grad_out)
        return dx + tied.run(self.shortcut, self.shortcut.backward, grad_out)

    def backward_params_only(self, grad_out: Any) -> None:
        """Set the parameter gradients of both branches; no d(loss)/d(input) is computed
        (a branch without parameters is skipped)."""
        self._check_backward(grad_out)
        branches = [b for b in (self.block, self.shortcut) if b is not None and b.parameters()]
        tied = TiedGradients(branches)
        for branch in branches:
            tied.run(branch, branch.backward_params_only, grad_out)

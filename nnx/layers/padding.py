"""Zero padding."""

from __future__ import annotations

from typing import Any

from ..functional import zero_pad2d_backward, zero_pad2d_forward
from ..module import Module
from ._common import check_grad_shape, check_input, missing_cache


class ZeroPad2d(Module):
    """Pads the last two axes with zeros.

    ``pad``: an int (all sides) or (left, right, top, bottom), as PyTorch.
    Shapes: X (B, C, H, W) -> (B, C, H+top+bottom, W+left+right); backward slices
    the gradient back to (B, C, H, W).
    """

    def __init__(self, pad: int | tuple[int, int, int, int]) -> None:
        if isinstance(pad, int) and not isinstance(pad, bool):
            sides = (pad, pad, pad, pad)
        elif isinstance(pad, (tuple, list)) and len(pad) == 4 and all(
            isinstance(p, int) and not isinstance(p, bool) for p in pad
        ):
            sides = tuple(int(p) for p in pad)
        else:
            raise ValueError(f"ZeroPad2d: pad must be an int or (left, right, top, bottom), "
                             f"got {pad!r}")
        if min(sides) < 0:
            raise ValueError(f"ZeroPad2d: pad must be >= 0, got {pad!r}")
        self.pad: tuple[int, int, int, int] = sides  # type: ignore[assignment]
        self._cache_shape: Any = None

    def extra_repr(self) -> str:
        return str(self.pad)

    def forward(self, x: Any) -> Any:
        # axis 0 is the batch only in (B, C, H, W)
        xp = check_input(self, x, None, (2, 3, 4), "(..., H, W)", batched=x.ndim == 4)
        self._cache_shape = tuple(x.shape) if self.training else None
        return zero_pad2d_forward(xp, x, self.pad)

    def backward(self, grad_out: Any) -> Any:
        if self._cache_shape is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, None, (2, 3, 4), "(..., H, W)",
                         batched=grad_out.ndim == 4)
        left, right, top, bottom = self.pad
        *lead, h, w = self._cache_shape
        expected = (*lead, h + top + bottom, w + left + right)
        check_grad_shape(self, grad_out, expected)
        return zero_pad2d_backward(xp, grad_out, self.pad)

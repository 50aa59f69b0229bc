"""array-api-strict: the standard and nothing more (catches every non-standard call).

Its extra device ``"device1"`` stands in for a second accelerator in tests.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailableError

NAME = "array_api_strict"
INSTALL_HINT = "pip install array-api-strict (or pip install 'nnx-array[test]')"


def probe(device: Any = None) -> str | None:
    """None when usable, else the reason it is not (every device exists wherever it does)."""
    if importlib.util.find_spec("array_api_strict") is None:
        return f"array_api_strict is not installed; {INSTALL_HINT}"
    return None


_ARRAY_TYPE: type | None = None


def owns(x: Any) -> bool:
    """True for an array-api-strict array (on any of its devices)."""
    xs = sys.modules.get("array_api_strict")
    if xs is None:
        return False
    global _ARRAY_TYPE
    if _ARRAY_TYPE is None:
        _ARRAY_TYPE = type(xs.asarray(0))  # its one array class (not public by name)
    return isinstance(x, _ARRAY_TYPE)


def to_numpy(x: Any) -> np.ndarray:
    """The values of array-api-strict array ``x`` in host memory."""
    import array_api_strict as xs

    cpu = xs.__array_namespace_info__().default_device()
    if x.device != cpu:
        x = x.to_device(cpu)
    return np.asarray(x)


class StrictBackend(Backend):
    """array-api-strict on one of its devices (``"device1"`` stands in for a second GPU)."""

    name = NAME

    def __init__(self, device: Any = None) -> None:
        reason = probe()
        if reason:
            raise BackendUnavailableError(f"Backend 'array_api_strict' is unavailable: {reason}.")
        import array_api_strict as xs

        self._xs = xs
        devices = {str(d): d for d in xs.__array_namespace_info__().devices()}
        if device is None:
            dev = xs.__array_namespace_info__().default_device()
        elif isinstance(device, str):
            key = device if device in devices else f"array_api_strict.Device('{device}')"
            if key not in devices:
                names = ", ".join(repr(str(d).split("'")[1]) for d in devices.values())
                raise BackendUnavailableError(
                    f"array_api_strict backend: no device {device!r}; it has {names}."
                )
            dev = devices[key]
        elif str(device) in devices:
            dev = devices[str(device)]
        else:
            names = ", ".join(repr(str(d).split("'")[1]) for d in devices.values())
            raise BackendUnavailableError(
                f"array_api_strict backend: no device {device!r}; it has {names}."
            )
        super().__init__(xs, dev)

    def owns(self, x: Any) -> bool:
        return owns(x)

    def from_numpy(self, a: np.ndarray) -> Any:
        return self._xs.asarray(np.asarray(a, order="C"), device=self.device)  # 0-d stays 0-d

    def to_numpy(self, x: Any) -> np.ndarray:
        return to_numpy(x)

    def versions(self) -> dict[str, str]:
        return {"array_api_strict": self._xs.__version__}


def create(device: Any = None) -> StrictBackend:
    return StrictBackend(device)

"""array-api-strict: the standard and nothing more (catches every non-standard call).

Its extra device ``"device1"`` stands in for a second accelerator in tests.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import array_api_compat
import numpy as np

from .base import Backend, BackendUnavailableError

INSTALL_HINT = "pip install array-api-strict (or pip install 'nnx-array[test]')"


def probe(device: Any = None) -> str | None:
    """None when usable, else the reason it is not (every device exists wherever it does)."""
    if importlib.util.find_spec("array_api_strict") is None:
        return f"array_api_strict is not installed; {INSTALL_HINT}"
    return None


class StrictBackend(Backend):
    """array-api-strict on one of its devices (``"device1"`` stands in for a second GPU)."""

    name = "array_api_strict"

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
        return array_api_compat.is_array_api_strict_namespace(
            array_api_compat.array_namespace(x)
        ) if hasattr(x, "__array_namespace__") else False

    def from_numpy(self, a: np.ndarray) -> Any:
        return self._xs.asarray(np.asarray(a, order="C"), device=self.device)  # 0-d stays 0-d

    def to_numpy(self, x: Any) -> np.ndarray:
        xs = self._xs
        cpu = xs.__array_namespace_info__().default_device()
        if x.device != cpu:
            x = x.to_device(cpu)
        return np.asarray(x)

    def versions(self) -> dict[str, str]:
        return {"array_api_strict": self._xs.__version__}


def create(device: Any = None) -> StrictBackend:
    return StrictBackend(device)

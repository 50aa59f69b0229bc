"""Yes/no environment variables, read by one rule.

``1``, ``true``, ``yes``, ``on`` mean yes and ``0``, ``false``, ``no``, ``off`` mean no
(any case, surrounding spaces ignored); unset or empty means "not set" (the caller's
default). Anything else is a ValueError naming the variable, so a typo never turns a
switch silently on or off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import overload

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@overload
def env_flag(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool: ...


@overload
def env_flag(name: str, default: None = None,
             environ: Mapping[str, str] | None = None) -> bool | None: ...


def env_flag(name: str, default: bool | None = None,
             environ: Mapping[str, str] | None = None) -> bool | None:
    """The yes/no value of environment variable ``name`` in ``environ`` (default:
    ``os.environ``), or ``default`` when it is unset or empty.

    Raises ValueError naming the variable and its value when the value is not one of
    :data:`TRUE_WORDS` or :data:`FALSE_WORDS`.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(name, "")
    text = raw.strip().lower()
    if not text:
        return default
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"environment variable {name}={raw!r} is not a yes/no value; use "
                     f"{', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}")


__all__ = ["FALSE_WORDS", "TRUE_WORDS", "env_flag"]

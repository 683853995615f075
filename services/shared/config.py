"""Typed, prefixed access to environment variables that fails loudly.

Each service reads its settings once, in ``Settings.from_env(env)``, through an
``EnvReader`` for its prefix (``NOTEBOOK_``, ``EXECUTION_`` ...). A bad value
stops the service at startup with a ``ConfigError`` naming the full variable
and the value it had (``NOTEBOOK_PORT='abc' is not an integer``), except for
secrets, whose values never appear in a message. A variable that is set but
empty counts as unset, so ``FOO=`` in a compose file means "use the default".
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping, Sequence

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting is missing or has a value the service cannot use."""


class EnvReader:
    """Reads ``<prefix><NAME>`` variables from ``env`` as typed values."""

    def __init__(self, env: Mapping[str, str], prefix: str) -> None:
        self._env = env
        self._prefix = prefix

    def text(self, name: str, default: str) -> str:
        """The variable as a string, or ``default``."""
        value = self._raw(name)
        return default if value is None else value

    def optional_text(self, name: str) -> str | None:
        """The variable as a string, or None when it is unset."""
        return self._raw(name)

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        """The variable as an int, or ``default``; at least ``minimum`` if given."""
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            message = f"{self._key(name)}={value!r} is not an integer"
            raise ConfigError(message) from None
        if minimum is not None and number < minimum:
            raise ConfigError(f"{self._key(name)}={value!r} must be at least {minimum}")
        return number

    def number(self, name: str, default: float) -> float:
        """The variable as a finite float, or ``default``."""
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(f"{self._key(name)}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"{self._key(name)}={value!r} is not a finite number")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        """The variable as a bool (1/0, true/false, yes/no, on/off), or ``default``."""
        value = self._raw(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ConfigError(
            f"{self._key(name)}={value!r} is not a boolean; "
            f"expected one of {_TRUE + _FALSE!r}"
        )

    def path(self, name: str, default: str | Path) -> Path:
        """The variable as a Path (``~`` expanded), or ``default``."""
        value = self._raw(name)
        return Path(default if value is None else value).expanduser()

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        """The variable, which must be one of ``choices``, or ``default``."""
        value = self._raw(name)
        if value is None:
            return default
        if value not in choices:
            raise ConfigError(
                f"{self._key(name)}={value!r}; expected one of {tuple(choices)!r}"
            )
        return value

    def secret(self, name: str) -> str:
        """A required secret; its absence is an error, its value is never shown."""
        value = self._raw(name)
        if value is None:
            raise ConfigError(f"{self._key(name)} is required but not set")
        return value

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def _raw(self, name: str) -> str | None:
        value = self._env.get(self._key(name))
        return value if value else None


LOOPBACK: Final = "127.0.0.1"


def listen_host(env: Mapping[str, str]) -> str:
    """``REFLOW_LISTEN_HOST``: where a service listens; loopback unless told.

    Services answer only with an internal token, but there is no reason to
    offer them to the network: containers set ``0.0.0.0`` explicitly.
    """
    return EnvReader(env, prefix="REFLOW_").text("LISTEN_HOST", LOOPBACK)


def listen_address(host: str, port: int) -> str:
    """``host:port`` for a gRPC server, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_service(name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())``; a ConfigError ends it with its message, exit 2.

    A missing or bad setting is the operator's to fix: one line naming the
    variable says more than a traceback.
    """
    try:
        asyncio.run(main())
    except ConfigError as error:
        print(f"{name}: {error}", file=sys.stderr)
        sys.exit(2)

"""The gateway's domain errors: why a user token was refused or could not be checked."""

from __future__ import annotations

from services.shared.errors import FailedPrecondition, Unauthenticated, Unavailable


class TokenRejected(Unauthenticated):
    """A user token that is missing, malformed, expired, or does not verify.

    The message says which (``token has expired``) and never quotes the token.
    ``reason`` is TOKEN_MISSING, TOKEN_EXPIRED, TOKEN_INVALID or
    SIGNING_KEY_UNKNOWN.
    """

    def __init__(self, message: str, reason: str = "TOKEN_INVALID") -> None:
        super().__init__(message, reason=reason)


class SigningKeysUnavailable(Unavailable):
    """The identity provider's key set cannot be fetched, so no token can be checked."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"cannot fetch the signing keys from {url}; try again later",
            reason="SIGNING_KEYS_UNAVAILABLE",
        )


class ServiceNotConfigured(FailedPrecondition):
    """A command needs a service this gateway was not given an address for."""

    def __init__(self, service: str, variable: str) -> None:
        super().__init__(
            f"the {service} service is not configured on this gateway: set {variable}",
            reason="SERVICE_NOT_CONFIGURED",
            metadata={"service": service, "setting": variable},
        )

"""The execution service's errors, each already in its status category."""

from __future__ import annotations

from services.shared.errors import NotFound, ResourceExhausted


class KernelNotFound(NotFound):
    """The notebook has no kernel (or belongs to someone else)."""

    def __init__(self, notebook_id: str) -> None:
        super().__init__(
            f"notebook {notebook_id!r} has no running kernel",
            reason="KERNEL_NOT_FOUND",
            metadata={"notebook_id": notebook_id},
        )


# A run takes seconds; a refused one is worth retrying about this soon.
RETRY_AFTER_S = 5.0


class TooManyKernels(ResourceExhausted):
    """Starting another kernel would pass a configured limit."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(
            f"{scope} already {'has' if scope != 'you' else 'have'} {limit} running "
            "kernels, the limit, and every one is busy; try again when a run "
            "ends, or shut one down (ShutdownKernel)",
            reason="TOO_MANY_KERNELS",
            metadata={"limit": str(limit)},
            retry_after_s=RETRY_AFTER_S,
        )


class WatcherTooSlow(ResourceExhausted):
    """A stream reader fell too far behind the run's events."""

    def __init__(self, notebook_id: str) -> None:
        super().__init__(
            f"the stream of notebook {notebook_id!r} fell too far behind its "
            "events and was dropped; reconnect to continue",
            reason="WATCHER_TOO_SLOW",
            metadata={"notebook_id": notebook_id},
        )

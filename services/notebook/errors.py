"""The notebook service's errors, each already in its status category."""

from __future__ import annotations

from services.shared.errors import (
    Aborted,
    AlreadyExists,
    DataLoss,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)


class NotebookNotFound(NotFound):
    """No such notebook, or it belongs to someone else: the two look alike."""

    def __init__(self, notebook_id: str) -> None:
        super().__init__(
            f"notebook {notebook_id!r} does not exist",
            reason="NOTEBOOK_NOT_FOUND",
            metadata={"notebook_id": notebook_id},
        )
        self.notebook_id = notebook_id


class CellNotFound(NotFound):
    """The notebook has no cell with this id."""

    def __init__(self, notebook_id: str, cell_id: str) -> None:
        super().__init__(
            f"cell {cell_id!r} does not exist in notebook {notebook_id!r}",
            reason="CELL_NOT_FOUND",
            metadata={"notebook_id": notebook_id, "cell_id": cell_id},
        )


class NotebookAlreadyExists(AlreadyExists):
    """A notebook with this id is already stored."""

    def __init__(self, notebook_id: str) -> None:
        super().__init__(
            f"notebook {notebook_id!r} already exists",
            reason="NOTEBOOK_EXISTS",
            metadata={"notebook_id": notebook_id},
        )


class RevisionConflict(Aborted):
    """A write expected another revision than the stored one."""

    def __init__(self, notebook_id: str, expected: int, current: int) -> None:
        super().__init__(
            f"notebook {notebook_id!r} is at revision {current}, "
            f"not {expected}: reload it and retry",
            current_revision=current,
            reason="REVISION_CONFLICT",
            metadata={"notebook_id": notebook_id, "expected_revision": str(expected)},
        )
        self.current = current


class CellChanged(Aborted):
    """A cell's code is no longer what the caller's edit started from."""

    def __init__(self, notebook_id: str, cell_id: str) -> None:
        super().__init__(
            f"cell {cell_id!r} was changed by someone else since your edit began",
            reason="CELL_CHANGED",
            metadata={"notebook_id": notebook_id, "cell_id": cell_id},
        )


class NotebookCorrupt(DataLoss):
    """The stored document cannot be read back."""

    def __init__(self, notebook_id: str, detail: str) -> None:
        super().__init__(
            f"notebook {notebook_id!r} is stored but cannot be read: {detail}",
            reason="NOTEBOOK_CORRUPT",
            metadata={"notebook_id": notebook_id},
        )


class InvalidPageToken(InvalidArgument):
    """A page token that this service did not issue."""

    def __init__(self) -> None:
        super().__init__(
            "page_token is not a token from a previous response",
            field_violations=[("page_token", "not a token from a previous response")],
        )


class NotebookTooLarge(ResourceExhausted):
    """The notebook exceeds what the store can keep (DynamoDB: its cell list)."""

    def __init__(self, notebook_id: str, detail: str) -> None:
        super().__init__(
            f"notebook {notebook_id!r} is too large to store: {detail}",
            reason="NOTEBOOK_TOO_LARGE",
            metadata={"notebook_id": notebook_id},
        )


class StoreUnavailable(Unavailable):
    """The store could not be reached, or kept refusing (throttling), after
    retries. The message names the failure, never credentials."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the notebook store is unavailable: {detail}",
            reason="STORE_UNAVAILABLE",
        )


class FileNotFound(NotFound):
    """The notebook has no file at this path."""

    def __init__(self, notebook_id: str, path: str) -> None:
        super().__init__(
            f"notebook {notebook_id!r} has no file {path!r}",
            reason="FILE_NOT_FOUND",
            metadata={"notebook_id": notebook_id, "path": path},
        )


class FileTooLarge(ResourceExhausted):
    """One file is larger than a notebook file may be."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(
            f"file {path!r} has {size} bytes; a file may have at most {limit}",
            reason="FILE_TOO_LARGE",
            metadata={"path": path, "limit_bytes": str(limit)},
        )


class FileQuotaExceeded(ResourceExhausted):
    """The user's files would take more than their quota."""

    def __init__(self, used: int, adding: int, quota: int) -> None:
        super().__init__(
            f"your files take {used} bytes; adding {adding} would pass "
            f"the quota of {quota}",
            reason="FILE_QUOTA_EXCEEDED",
            metadata={"used_bytes": str(used), "quota_bytes": str(quota)},
        )

"""The assistant's errors, each already in its status category."""

from __future__ import annotations

from services.shared.errors import FailedPrecondition, InvalidArgument, NotFound


class LlmNotConfigured(FailedPrecondition):
    """No model to talk to: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set."""

    def __init__(self) -> None:
        super().__init__(
            "the assistant has no language model configured: set OPENAI_API_KEY "
            "(for OpenAI) or OPENAI_BASE_URL (for an OpenAI-compatible server) "
            "on the assistant service, and ASSISTANT_MODEL to choose the model",
            reason="LLM_NOT_CONFIGURED",
            metadata={"settings": "OPENAI_API_KEY,OPENAI_BASE_URL"},
        )


class ConversationNotFound(NotFound):
    """No such conversation, or it belongs to someone else: the two look alike."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} does not exist",
            reason="CONVERSATION_NOT_FOUND",
            metadata={"conversation_id": conversation_id},
        )


class ConversationOfAnotherNotebook(InvalidArgument):
    """A turn named a conversation that is about a different notebook."""

    def __init__(self, conversation_id: str, notebook_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is about notebook {notebook_id!r}",
            field_violations=[
                ("conversation_id", f"is about notebook {notebook_id!r}")
            ],
            reason="CONVERSATION_OF_ANOTHER_NOTEBOOK",
        )


class ConversationBusy(FailedPrecondition):
    """A turn is already running in this conversation."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is answering another message; "
            "wait for it to finish or cancel it",
            reason="CONVERSATION_BUSY",
            metadata={"conversation_id": conversation_id},
        )


class InvalidPageToken(InvalidArgument):
    """A page token that this service did not issue."""

    def __init__(self) -> None:
        super().__init__(
            "page_token is not a token from a previous response",
            field_violations=[("page_token", "not a token from a previous response")],
        )

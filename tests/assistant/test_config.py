"""The assistant's settings."""

from __future__ import annotations

from pathlib import Path

from services.assistant.config import Settings

# Every service needs the shared secret; there is no built-in one.
SECRET = {"REFLOW_INTERNAL_SECRET": "config-tests-internal-secret-0123456789"}

KEY = "sk-config-test-0123456789abcdef"


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env(SECRET)

    assert settings.port == 50053
    assert settings.data_dir == Path("data/assistant")
    assert settings.audit_log == Path("data/assistant/audit.log")
    assert settings.turns.max_tool_rounds == 8
    assert not settings.model.configured


def test_a_base_url_alone_configures_a_model() -> None:
    settings = Settings.from_env({**SECRET, "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})

    assert settings.model.configured


def test_audit_log_follows_the_data_dir_unless_set() -> None:
    moved = Settings.from_env({**SECRET, "ASSISTANT_DATA_DIR": "/srv/a"})
    chosen = Settings.from_env(
        {**SECRET, "ASSISTANT_AUDIT_LOG": "/var/log/audit.jsonl"}
    )

    assert moved.audit_log == Path("/srv/a/audit.log")
    assert chosen.audit_log == Path("/var/log/audit.jsonl")


def test_api_key_never_appears_in_a_repr() -> None:
    settings = Settings.from_env(
        {**SECRET, "OPENAI_API_KEY": KEY, "ASSISTANT_MODEL": "m"}
    )

    assert settings.model.configured
    assert settings.model.model == "m"
    assert KEY not in repr(settings)

"""The notebook service's settings, as NOTEBOOK_* (and AWS_REGION) give them."""

from __future__ import annotations

import pytest

from services.notebook.config import Settings
from services.notebook.store import DynamoDBSettings
from services.shared.config import ConfigError

# Every service needs the shared secret; there is no built-in one.
SECRET = {"REFLOW_INTERNAL_SECRET": "config-tests-internal-secret-0123456789"}


def test_dynamodb_settings_default_to_the_documented_values() -> None:
    settings = Settings.from_env(SECRET)

    assert settings.store == "local"
    assert settings.dynamodb == DynamoDBSettings(
        table="reflow-notebooks", region="us-east-1", endpoint_url=None
    )


def test_dynamodb_store_is_configured_by_its_variables() -> None:
    settings = Settings.from_env(
        {
            **SECRET,
            "NOTEBOOK_STORE": "dynamodb",
            "NOTEBOOK_DYNAMODB_TABLE": "nb",
            "NOTEBOOK_DYNAMODB_REGION": "eu-west-3",
            "NOTEBOOK_DYNAMODB_ENDPOINT_URL": "http://dynamodb:8000",
        }
    )

    assert settings.store == "dynamodb"
    assert settings.dynamodb == DynamoDBSettings(
        table="nb", region="eu-west-3", endpoint_url="http://dynamodb:8000"
    )


def test_region_falls_back_to_aws_region() -> None:
    settings = Settings.from_env({**SECRET, "AWS_REGION": "ap-south-1"})

    assert settings.dynamodb.region == "ap-south-1"


def test_notebook_region_wins_over_aws_region() -> None:
    settings = Settings.from_env(
        {**SECRET, "AWS_REGION": "ap-south-1", "NOTEBOOK_DYNAMODB_REGION": "eu-west-3"}
    )

    assert settings.dynamodb.region == "eu-west-3"


def test_unknown_store_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"NOTEBOOK_STORE='s3'.*dynamodb"):
        Settings.from_env({**SECRET, "NOTEBOOK_STORE": "s3"})


def test_a_redis_without_a_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="NOTEBOOK_REDIS_URL has no password"):
        Settings.from_env({**SECRET, "NOTEBOOK_REDIS_URL": "redis://127.0.0.1:6379/0"})
    url = "redis://:s3cret@127.0.0.1:6379/0"
    assert Settings.from_env({**SECRET, "NOTEBOOK_REDIS_URL": url}).redis_url == url

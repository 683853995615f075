"""The stack's settings and plan, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.shared.config import ConfigError
from services.stack.config import StackSettings
from services.stack.envoy_config import Address
from services.stack.plan import envoy_options, plan_stack, service_env
from services.stack.secret import internal_secret

SECRET = "plan-tests-internal-secret-0123456789-0123"


def test_defaults_are_the_documented_ports() -> None:
    settings = StackSettings.from_env({})

    assert settings.ports.named() == {
        "REFLOW_HTTP_PORT": 8080,
        "NOTEBOOK_PORT": 50051,
        "EXECUTION_PORT": 50052,
        "ASSISTANT_PORT": 50053,
        "GATEWAY_GRPC_PORT": 50050,
        "GATEWAY_HTTP_PORT": 8000,
        "REFLOW_ENVOY_METRICS_PORT": 9401,
        "NOTEBOOK_METRICS_PORT": 9451,
        "EXECUTION_METRICS_PORT": 9452,
        "ASSISTANT_METRICS_PORT": 9453,
        "GATEWAY_METRICS_PORT": 9450,
    }
    assert settings.url == "http://localhost:8080"
    assert settings.listen_host == "127.0.0.1"


def test_two_processes_on_one_port_are_refused() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_HTTP_PORT and REFLOW_HTTP_PORT"):
        StackSettings.from_env({"GATEWAY_HTTP_PORT": "8080"})


def test_bad_port_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="REFLOW_HTTP_PORT"):
        StackSettings.from_env({"REFLOW_HTTP_PORT": "70000"})


def test_services_are_wired_to_each_other_whatever_the_shell_says() -> None:
    settings = StackSettings.from_env({"NOTEBOOK_PORT": "6001"})
    shell = {"NOTEBOOK_SERVICE_ADDR": "elsewhere:1", "ASSISTANT_SERVICE_ADDR": "x:2"}

    env = service_env(settings, shell, assistant=False, secret=SECRET)

    assert env["NOTEBOOK_SERVICE_ADDR"] == "127.0.0.1:6001"
    assert env["NOTEBOOK_PORT"] == "6001"
    assert "ASSISTANT_SERVICE_ADDR" not in env


def test_storage_defaults_to_files_under_the_data_dir_unless_set() -> None:
    settings = StackSettings.from_env({"REFLOW_DATA_DIR": "/srv/reflow"})

    default = service_env(settings, {}, assistant=True, secret=SECRET)
    chosen = service_env(
        settings, {"NOTEBOOK_STORE": "memory"}, assistant=True, secret=SECRET
    )

    assert default["NOTEBOOK_STORE"] == "local"
    assert default["NOTEBOOK_DATA_DIR"] == "/srv/reflow/notebooks"
    assert default["GATEWAY_DATA_DIR"] == "/srv/reflow/gateway"
    assert chosen["NOTEBOOK_STORE"] == "memory"


def test_envoy_starts_after_the_services_and_stops_first() -> None:
    settings = StackSettings.from_env({})

    members = plan_stack(settings, {}, Path("."), "envoy", assistant=True)

    by_name = {member.spec.name: member for member in members}
    assert list(by_name) == ["notebook", "execution", "assistant", "gateway", "envoy"]
    assert by_name["envoy"].start_stage > by_name["gateway"].start_stage
    ranks = sorted(by_name, key=lambda name: by_name[name].stop_rank)
    assert ranks[:2] == ["envoy", "gateway"]
    assert ranks[-1] == "notebook"


def test_envoy_points_at_the_gateway_on_loopback() -> None:
    settings = StackSettings.from_env(
        {"GATEWAY_GRPC_PORT": "7000", "GATEWAY_HTTP_PORT": "7001"}
    )

    options = envoy_options(settings)

    assert options.gateway_grpc == Address("127.0.0.1", 7000)
    assert options.gateway_http == Address("127.0.0.1", 7001)
    assert Path(options.descriptor).is_absolute()


@pytest.mark.parametrize(
    ("text", "address"),
    [("gateway:50050", Address("gateway", 50050)), ("[::1]:80", Address("::1", 80))],
)
def test_address_parses_host_and_port(text: str, address: Address) -> None:
    assert Address.parse(text) == address


def test_assistant_is_wired_in_with_its_data_under_the_data_dir() -> None:
    settings = StackSettings.from_env({"REFLOW_DATA_DIR": "/srv/reflow"})

    env = service_env(settings, {}, assistant=True, secret=SECRET)

    assert env["ASSISTANT_SERVICE_ADDR"] == "127.0.0.1:50053"
    assert env["ASSISTANT_DATA_DIR"] == "/srv/reflow/assistant"


# -- the internal secret ----------------------------------------------------


def test_the_stack_makes_a_private_random_secret_once_and_reuses_it(
    tmp_path: Path,
) -> None:
    first = internal_secret(tmp_path / "data", {})
    again = internal_secret(tmp_path / "data", {})

    assert first == again
    assert len(first) >= 32
    assert (tmp_path / "data" / "internal-secret").stat().st_mode & 0o777 == 0o600
    assert internal_secret(tmp_path / "other", {}) != first


def test_an_exported_secret_wins_and_is_not_written(tmp_path: Path) -> None:
    exported = {"REFLOW_INTERNAL_SECRET": "exported-secret-0123456789-0123456789"}

    assert internal_secret(tmp_path, exported) == exported["REFLOW_INTERNAL_SECRET"]
    assert not (tmp_path / "internal-secret").exists()

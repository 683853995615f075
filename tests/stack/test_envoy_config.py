"""Envoy's configuration: the committed one is current, every rendering validates."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Final

import pytest
import yaml

from services.stack.envoy_config import Address, EnvoyOptions, InternalService, render
from tests.stack.stack_process import BIN, ROOT

if TYPE_CHECKING:
    from pathlib import Path

ENVOY: Final = BIN / "envoy"


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate``, from the repository root (where the
    default configuration's relative descriptor path points)."""
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "--log-level", "error"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_envoy_yaml_validates() -> None:
    result = validate(ROOT / "envoy.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_committed_envoy_yaml_is_the_default_rendering() -> None:
    committed = (ROOT / "envoy.yaml").read_text()

    assert committed == render(EnvoyOptions()), "run `make envoy-config`"


def test_config_for_other_addresses_and_any_origin_validates(tmp_path: Path) -> None:
    options = EnvoyOptions(
        listen=Address("0.0.0.0", 18080),
        admin=Address("127.0.0.1", 19901),
        gateway_grpc=Address("gateway", 50050),
        gateway_http=Address("gateway", 8000),
        descriptor=str(ROOT / "protos" / "reflow.binpb"),
        allowed_origins=("*",),
    )
    config = tmp_path / "envoy.yaml"
    config.write_text(render(options))

    result = validate(config)

    assert result.returncode == 0, result.stdout + result.stderr


def replicated() -> EnvoyOptions:
    """Two notebook and two execution replicas behind internal listeners."""
    return EnvoyOptions(
        descriptor=str(ROOT / "protos" / "reflow.binpb"),
        internal=(
            InternalService(
                "notebook",
                Address("127.0.0.1", 18051),
                (Address("127.0.0.1", 18151), Address("127.0.0.1", 18251)),
            ),
            InternalService(
                "execution",
                Address("127.0.0.1", 18052),
                (Address("127.0.0.1", 18152), Address("127.0.0.1", 18252)),
            ),
        ),
    )


def test_config_with_replicated_services_validates(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(render(replicated()))

    result = validate(config)

    assert result.returncode == 0, result.stdout + result.stderr


def test_replicated_service_is_a_ring_hashed_cluster_on_the_notebook_header() -> None:
    parsed = yaml.safe_load(render(replicated()))
    resources = parsed["static_resources"]

    listeners = {item["name"]: item for item in resources["listeners"]}
    clusters = {item["name"]: item for item in resources["clusters"]}
    manager = listeners["internal_execution"]["filter_chains"][0]["filters"][0]
    (route,) = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    endpoints = clusters["execution"]["load_assignment"]["endpoints"][0]
    assert listeners["internal_execution"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 18052,
    }
    assert route["route"]["cluster"] == "execution"
    assert route["route"]["hash_policy"] == [
        {"header": {"header_name": "x-reflow-notebook-id"}}
    ]
    assert clusters["execution"]["lb_policy"] == "RING_HASH"
    assert [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in endpoints["lb_endpoints"]
    ] == [18152, 18252]
    assert "grpc_health_check" in clusters["notebook"]["health_checks"][0]


def test_service_name_that_could_break_the_yaml_is_refused() -> None:
    internal = (InternalService("x: {", Address("127.0.0.1", 1), ()),)

    with pytest.raises(ValueError, match="not a service name"):
        render(EnvoyOptions(internal=internal))


def test_config_that_traces_to_an_otlp_collector_validates(tmp_path: Path) -> None:
    options = EnvoyOptions(
        descriptor=str(ROOT / "protos" / "reflow.binpb"),
        otlp_collector=Address("collector", 4317),
    )
    config = tmp_path / "envoy.yaml"
    config.write_text(render(options))

    result = validate(config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "envoy.tracers.opentelemetry" in config.read_text()


def test_without_a_collector_envoy_has_no_tracer() -> None:
    assert "tracing:" not in render(EnvoyOptions())


@pytest.mark.parametrize(
    "origin", ["localhost:5173", "http://x.test/path", 'http://x.test", "evil']
)
def test_origin_that_is_not_scheme_host_port_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match="CORS origin"):
        render(EnvoyOptions(allowed_origins=(origin,)))


def test_host_that_could_break_the_yaml_is_refused() -> None:
    with pytest.raises(ValueError, match="not a host"):
        render(EnvoyOptions(gateway_grpc=Address("gateway}\nadmin: {", 50050)))

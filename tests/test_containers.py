"""CI runs docker/compose.yaml by hand (.ci/compose_run.py, with podman on the host
network). These tests hold the two together: every compose service is started with the
same image, command, environment and replica count, and the only differences are the
host-network changes the runner's docstring lists. They also pin what the compose file
promises Docker users (health checks enforced, a cockpit token required, distinct node
ids)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker" / "compose.yaml"
IMAGE = "localhost/rexec-ci:test"


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_run", REPO / ".ci" / "compose_run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compose_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


runner = load_runner()
PORTS = runner.Ports(redis=16001, cockpit=16002, health=[16003, 16004, 16005, 16006])
ENV = {"REXEC_COCKPIT_TOKEN": "s3cret"}


@pytest.fixture
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def planned(compose: dict[str, Any], **kwargs: Any) -> list[Any]:
    options: dict[str, Any] = {"run_id": "t", "image": IMAGE, "ports": PORTS, "env": ENV}
    options.update(kwargs)
    return list(runner.plan(compose, **options))


def expected_command(name: str, command: list[str]) -> list[str]:
    """compose's command with the host-network changes the runner documents."""
    if name == "redis":
        return [*command, "--port", "16001", "--bind", "127.0.0.1"]
    if command[:1] == ["cockpit"]:
        changed = list(command)
        changed[changed.index("--host") + 1] = "127.0.0.1"
        changed[changed.index("--port") + 1] = "16002"
        return changed
    return command


def test_every_service_runs_with_its_image_command_environment_and_scale(
    compose: dict[str, Any],
) -> None:
    containers = planned(compose)
    services = compose["services"]
    assert {c.service for c in containers} == set(services)
    for name, service in services.items():
        mine = [c for c in containers if c.service == name]
        assert len(mine) == service.get("deploy", {}).get("replicas", 1), name
        environment = {
            k: runner.interpolate(str(v), ENV) for k, v in service.get("environment", {}).items()
        }
        for c in mine:
            assert c.image == (IMAGE if "build" in service else service["image"]), name
            assert c.command == expected_command(name, service["command"]), name
            assert set(c.env) == set(environment), name
            changed = {k for k in environment if environment[k] != c.env[k]}
            assert changed <= {"REXEC_REDIS_URL", "REXEC_HEALTH_PORT"}, (name, changed)
            assert set(c.depends_on) == set(service.get("depends_on", {})), name
            assert c.init == service.get("init", False), name


def test_the_host_network_changes_are_exactly_the_listed_ones(compose: dict[str, Any]) -> None:
    by_name = {c.name: c for c in planned(compose)}
    redis = by_name["rexec-ci-t-redis-1"]
    assert redis.command[-4:] == ["--port", "16001", "--bind", "127.0.0.1"]
    assert redis.health == ["sh", "-c", "redis-cli -p 16001 ping | grep -q PONG"]
    assert redis.volumes == ["rexec-ci-t-redis-data:/data"]
    engines = [by_name["rexec-ci-t-engine-1"], by_name["rexec-ci-t-engine-2"]]
    assert [e.command for e in engines] == [compose["services"]["engine"]["command"]] * 2
    assert [e.env["REXEC_REDIS_URL"] for e in engines] == ["redis://redis:16001/0"] * 2
    assert [e.env["REXEC_HEALTH_PORT"] for e in engines] == ["16003", "16004"]
    # One hostname per container: every engine gets its own node id.
    assert len({c.hostname for c in by_name.values()}) == len(by_name)
    assert [e.health for e in engines] == [["python", "-m", "rexec.health", "readyz"]] * 2
    cockpit = by_name["rexec-ci-t-cockpit-1"]
    assert cockpit.command == ["cockpit", "--host", "127.0.0.1", "--port", "16002"]
    assert cockpit.env["REXEC_COCKPIT_TOKEN"] == "s3cret"
    assert "http://127.0.0.1:16002/" in cockpit.health[-1]
    producer = by_name["rexec-ci-t-producer-1"]
    assert producer.health is None and producer.oneshot
    args = runner.run_args(engines[0], "t", ["redis", "engine", "producer", "cockpit"])
    assert args[args.index("--network") + 1] == "host"
    assert args[args.index("--hostname") + 1] == "engine-1"
    assert "redis:127.0.0.1" in args and "--init" in args
    assert args[args.index("--stop-timeout") + 1] == "40"
    assert args[-len(engines[0].command) - 1 :] == [IMAGE, *engines[0].command]


def test_services_start_after_what_they_depend_on(compose: dict[str, Any]) -> None:
    order = [c.service for c in planned(compose)]
    first = {s: order.index(s) for s in order}
    for name, service in compose["services"].items():
        for dep in service.get("depends_on", {}):
            assert first[dep] < first[name], (dep, name)


def test_a_service_the_runner_cannot_mirror_fails_the_run(compose: dict[str, Any]) -> None:
    compose["services"]["engine"]["network_mode"] = "bridge"
    with pytest.raises(runner.RunError, match="does not mirror"):
        planned(compose)


def test_compose_requires_a_cockpit_token(compose: dict[str, Any]) -> None:
    with pytest.raises(runner.RunError, match="REXEC_COCKPIT_TOKEN"):
        planned(compose, env={})
    assert "change-me" not in COMPOSE.read_text()


def test_compose_enforces_health_before_dependents(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                check = services[dep].get("healthcheck", {})
                assert check and not check.get("disable"), (name, dep)
    assert services["producer"]["depends_on"]["engine"]["condition"] == "service_healthy"
    # Docker waits longer than the node's own graceful stop (shutdown timeout + 10 s).
    assert runner.seconds(services["engine"]["stop_grace_period"], 0) >= 30 + 10


def test_interpolation_follows_compose() -> None:
    assert runner.interpolate("${A:-x}", {}) == "x"
    assert runner.interpolate("${A:-x}", {"A": ""}) == "x"
    assert runner.interpolate("${A-x}", {"A": ""}) == ""
    assert runner.interpolate("a${A}b", {"A": "1"}) == "a1b"
    with pytest.raises(runner.RunError, match="needs A: say so"):
        runner.interpolate("${A:?say so}", {"A": ""})


def test_dockerfile_health_check_and_no_embedded_redis() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "rexec.health", "readyz"]' in text
    assert "REXEC_EMBEDDED_REDIS=off" in text
    assert ",rw" not in text  # a read-write bind mount writes into the context under podman


# -- docker/compose.cluster.yaml: checked, not run (.ci/check-docker validates its schema) --

CLUSTER_COMPOSE = REPO / "docker" / "compose.cluster.yaml"


@pytest.fixture
def cluster_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CLUSTER_COMPOSE.read_text())
    return data


def test_cluster_compose_is_valid_compose() -> None:
    import shutil
    import subprocess

    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(CLUSTER_COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_compose_has_six_cluster_nodes_formed_once(cluster_compose: dict[str, Any]) -> None:
    services = cluster_compose["services"]
    nodes = sorted(name for name in services if name.startswith("redis-"))
    assert nodes == [f"redis-{i}" for i in range(1, 7)]
    for name in nodes:
        command = services[name]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert "container_name" not in services[name]
        assert services[name]["volumes"] == [f"{name}-data:/data"]
    create = services["cluster-create"]
    assert create["restart"] == "no"
    assert {n: {"condition": "service_healthy"} for n in nodes} == create["depends_on"]
    script = create["command"][0]
    assert "--cluster-replicas 1" in script and "--cluster-yes" in script
    assert "cluster_state:ok" in script  # a second `up` leaves a formed cluster alone


def test_cluster_compose_engines_scale_and_name_a_seed_node(
    cluster_compose: dict[str, Any],
) -> None:
    from rexec.connection import parse_url

    services = cluster_compose["services"]
    engine = services["engine"]
    assert engine["deploy"]["replicas"] >= 2
    assert "container_name" not in engine and "ports" not in engine
    url = engine["environment"]["REXEC_REDIS_URL"]
    assert parse_url(url).kind == "cluster"
    after_cluster = {"cluster-create": {"condition": "service_completed_successfully"}}
    assert engine["depends_on"] == after_cluster
    assert services["cockpit"]["depends_on"] == after_cluster
    assert services["producer"]["depends_on"] == {"engine": {"condition": "service_healthy"}}

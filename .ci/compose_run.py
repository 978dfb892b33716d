"""Runs docker/compose.yaml's services by hand with podman, on the host network, and
checks the cluster: every job of the producer's load committed exactly once, an engine
stopped with SIGTERM exits 0. Called by .ci/containers once the images exist.

Why by hand: podman-compose with podman 4.3 ignores health conditions, its container DNS
stalls, and `down` leaves scaled replicas behind. So this script reads compose.yaml itself
and starts the same services, images, commands, environment and replica counts, enforcing
`depends_on` conditions by running each service's health check. On the host network the
services share the loopback, so a few things must change, and only these (see
`host_network`; tests/test_containers.py holds the script to that list):

- every container gets `--network host`, its own `--hostname` (<service>-<n>: with one
  hostname for all, every engine would get the same node id) and `--add-host` entries
  mapping each service name to 127.0.0.1, so URLs like redis://redis:6379 still resolve;
- ports move to free ones: Redis's port (in its command, the health check and every
  REXEC_REDIS_URL), the cockpit's --port, each engine replica's REXEC_HEALTH_PORT;
- what listens is bound to 127.0.0.1 (Redis --bind, the cockpit --host): nothing of a
  CI run is reachable from other machines;
- images from `build:` are the one image this script builds from docker/Dockerfile;
  `image:` names are used as they are (.ci/containers makes them locally).
Restart policies are not mirrored: in CI a container that dies fails the run.

Usage: compose_run.py run [--run-id ID] [--keep]   |   compose_run.py down --run-id ID
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
LABEL = "org.rexec.ci.run"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HEALTH_WAIT_S = 120.0
DRAIN_WAIT_S = 150.0
# Keys of a compose service this script knows how to mirror; any other key fails the
# run, so that a service CI cannot reproduce is noticed, not silently dropped.
SERVICE_KEYS = frozenset(
    {
        "image", "build", "command", "environment", "volumes", "healthcheck", "restart",
        "depends_on", "deploy", "stop_grace_period", "init", "ports",
    }
)  # fmt: skip
DEPLOY_KEYS = frozenset({"replicas"})


class RunError(Exception):
    pass


# -- compose.yaml -----------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise RunError(f"{path}: no services")
    return data


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (and their forms without ':')."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is not None and op.endswith("?") and unset:
            raise RunError(f"compose needs {name}: {arg}")
        if op is not None and op.endswith("-") and unset:
            return arg
        return value or ""

    return _VAR.sub(one, text)


def seconds(text: str | None, default: float) -> float:
    if text is None:
        return default
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text)):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


@dataclass
class Ports:
    redis: int
    cockpit: int
    health: list[int]

    @classmethod
    def free(cls, replicas: int) -> Ports:
        found: list[int] = []
        socks = []
        try:
            for _ in range(2 + replicas):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
                found.append(int(s.getsockname()[1]))
        finally:
            for s in socks:
                s.close()
        return cls(redis=found[0], cockpit=found[1], health=found[2:])


@dataclass
class Container:
    service: str
    replica: int  # 1-based
    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    hostname: str
    health: list[str] | None  # run with `podman exec`; None: no health check
    depends_on: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    init: bool = False
    stop_timeout_s: float | None = None
    oneshot: bool = False


def health_command(
    check: Mapping[str, Any] | None, image_default: list[str] | None
) -> list[str] | None:
    if check is None:
        return image_default
    if check.get("disable"):
        return None
    test = check.get("test")
    if isinstance(test, str):
        return ["sh", "-c", test]
    if not isinstance(test, list) or not test:
        raise RunError(f"unsupported healthcheck test: {test!r}")
    if test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return [str(a) for a in test[1:]]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(str(a) for a in test[1:])]
    raise RunError(f"unsupported healthcheck test: {test!r}")


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    auth = parts.netloc.rpartition("@")[0]
    netloc = (auth + "@" if auth else "") + f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def replace_option(command: list[str], option: str, value: str) -> list[str]:
    if option not in command:
        return [*command, option, value]
    i = command.index(option)
    return [*command[: i + 1], value, *command[i + 2 :]]


def host_network(c: Container, ports: Ports, *, redis_service: str) -> Container:
    """The changes the shared loopback forces (the module docstring lists them)."""
    if "REXEC_REDIS_URL" in c.env:
        c.env["REXEC_REDIS_URL"] = with_port(c.env["REXEC_REDIS_URL"], ports.redis)
    if "REXEC_HEALTH_PORT" in c.env:
        c.env["REXEC_HEALTH_PORT"] = str(ports.health[c.replica - 1])
    if c.service == redis_service:
        c.command = [*c.command, "--port", str(ports.redis), "--bind", "127.0.0.1"]
        if c.health is not None:
            c.health = [a.replace("redis-cli", f"redis-cli -p {ports.redis}") for a in c.health]
    if c.command[:1] == ["cockpit"]:
        old = c.command[c.command.index("--port") + 1] if "--port" in c.command else "8080"
        c.command = replace_option(c.command, "--host", "127.0.0.1")
        c.command = replace_option(c.command, "--port", str(ports.cockpit))
        if c.health is not None:
            c.health = [a.replace(f":{old}/", f":{ports.cockpit}/") for a in c.health]
    return c


def plan(
    compose: Mapping[str, Any],
    *,
    run_id: str,
    image: str,
    ports: Ports | None = None,
    env: Mapping[str, str] | None = None,
    image_health: list[str] | None = None,
) -> list[Container]:
    """The containers that mirror compose.yaml, in start order (dependencies first)."""
    services: dict[str, Any] = dict(compose["services"])
    env = os.environ if env is None else env
    builds = {json.dumps(s["build"], sort_keys=True) for s in services.values() if "build" in s}
    if len(builds) > 1:
        raise RunError("services build different images; this runner builds one")
    replicas = {
        name: int((s.get("deploy") or {}).get("replicas", 1)) for name, s in services.items()
    }
    ports = ports or Ports.free(max(replicas.values()))
    redis_services = [n for n, s in services.items() if str(s.get("image", "")).startswith("redis")]
    if len(redis_services) != 1:
        raise RunError("expected exactly one Redis service")
    containers: list[Container] = []
    for name in start_order(services):
        s = services[name]
        unknown = set(s) - SERVICE_KEYS
        if unknown:
            raise RunError(f"service {name}: CI does not mirror {sorted(unknown)}")
        if set(s.get("deploy") or {}) - DEPLOY_KEYS:
            raise RunError(f"service {name}: CI mirrors only deploy.replicas")
        for replica in range(1, replicas[name] + 1):
            environment = s.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment)
            depends = s.get("depends_on") or {}
            if isinstance(depends, list):
                depends = {d: {"condition": "service_started"} for d in depends}
            check = s.get("healthcheck")
            c = Container(
                service=name,
                replica=replica,
                name=f"rexec-ci-{run_id}-{name}-{replica}",
                image=image if "build" in s else str(s["image"]),
                command=[str(a) for a in s.get("command") or []],
                env={k: interpolate(str(v), env) for k, v in environment.items()},
                hostname=f"{name}-{replica}",
                health=health_command(check, image_health if "build" in s else None),
                depends_on={
                    d: str(v.get("condition", "service_started")) for d, v in depends.items()
                },
                volumes=[
                    (f"rexec-ci-{run_id}-{v}" if not v.startswith(("/", ".")) else v)
                    for v in (s.get("volumes") or [])
                ],
                init=bool(s.get("init")),
                stop_timeout_s=seconds(s.get("stop_grace_period"), 10.0)
                if "stop_grace_period" in s
                else None,
                oneshot=str(s.get("restart", "no")) == "no",
            )
            containers.append(host_network(c, ports, redis_service=redis_services[0]))
    return containers


def start_order(services: Mapping[str, Any]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise RunError(f"depends_on cycle through {name}")
        if name not in services:
            raise RunError(f"depends_on names an unknown service {name}")
        visiting.add(name)
        depends = services[name].get("depends_on") or {}
        for dep in depends:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def run_args(c: Container, run_id: str, all_services: Sequence[str]) -> list[str]:
    args = ["run", "-d", "--name", c.name, "--label", f"{LABEL}={run_id}", "--network", "host"]
    args += ["--hostname", c.hostname]
    for service in all_services:
        args += ["--add-host", f"{service}:127.0.0.1"]
    if c.init:
        args.append("--init")
    if c.stop_timeout_s is not None:
        args += ["--stop-timeout", str(int(c.stop_timeout_s))]
    for key, value in c.env.items():
        args += ["-e", f"{key}={value}"]
    for volume in c.volumes:
        args += ["-v", volume]
    return [*args, c.image, *c.command]


# -- podman -----------------------------------------------------------------------------------


def podman(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RunError(f"podman {' '.join(args[:3])}...: {result.stderr.strip() or result.stdout}")
    return result


def say(message: str) -> None:
    print(f"containers: {message}", flush=True)


def build_image(tag: str) -> None:
    """Builds docker/Dockerfile from what git would commit (no .venv, no build output)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rexec-ci-context-") as ctx:
        for rel in filter(None, listed.stdout.decode().split("\0")):
            src = REPO / rel
            if src.is_file():
                dst = Path(ctx) / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        args = ["build", "--pull=never", "--network", "host", "-f", "docker/Dockerfile", "-t", tag]
        if Path(CA_BUNDLE).exists():  # pip inside the build trusts what the host trusts
            args += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        result = podman(*args, ctx, check=False, timeout=900)
        if result.returncode != 0:
            print(result.stdout[-6000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
            raise RunError("podman build of docker/Dockerfile failed")


def image_healthcheck(image: str) -> list[str] | None:
    out = podman("image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout.strip()
    if out in ("", "null", "<nil>"):
        return None
    test = json.loads(out).get("Test") or []
    return health_command({"test": test}, None)


def healthy(c: Container) -> bool:
    assert c.health is not None
    return podman("exec", c.name, *c.health, check=False, timeout=30).returncode == 0


def running(c: Container) -> bool:
    state = podman("inspect", "--format", "{{.State.Status}}", c.name, check=False).stdout
    return state.strip() == "running"


def wait_healthy(group: list[Container]) -> None:
    for c in group:
        if c.health is None:
            raise RunError(f"{c.service}: depended on as service_healthy but has no health check")
        deadline = time.monotonic() + HEALTH_WAIT_S
        while not healthy(c):
            if not running(c):
                raise RunError(f"{c.name} exited while starting")
            if time.monotonic() > deadline:
                raise RunError(f"{c.name} not healthy within {HEALTH_WAIT_S:.0f} s")
            time.sleep(0.5)
    say(f"{group[0].service}: healthy ({len(group)} container(s))")


def exit_code(c: Container, timeout: float) -> int:
    result = podman("wait", c.name, check=False, timeout=timeout)
    if result.returncode != 0:
        raise RunError(f"podman wait {c.name}: {result.stderr.strip()}")
    return int(result.stdout.strip().splitlines()[-1])


def up(containers: list[Container], run_id: str) -> None:
    services = list(dict.fromkeys(c.service for c in containers))
    by_service = {s: [c for c in containers if c.service == s] for s in services}
    needed_healthy = {
        dep for c in containers for dep, cond in c.depends_on.items() if cond == "service_healthy"
    }
    for volume in {v.split(":", 1)[0] for c in containers for v in c.volumes}:
        if not volume.startswith("/"):
            podman("volume", "create", "--label", f"{LABEL}={run_id}", volume)
    for service in services:
        group = by_service[service]
        for c in group:
            for dep, cond in c.depends_on.items():
                if cond == "service_completed_successfully":
                    for d in by_service[dep]:
                        if exit_code(d, HEALTH_WAIT_S) != 0:
                            raise RunError(f"{d.name} did not complete successfully")
        for c in group:
            podman(*run_args(c, run_id, services))
        say(f"{service}: started {len(group)} container(s)")
        if service in needed_healthy:
            wait_healthy(group)


def down(run_id: str) -> None:
    flt = f"label={LABEL}={run_id}"
    names = podman(
        "ps", "-a", "--filter", flt, "--format", "{{.Names}}", check=False
    ).stdout.split()
    if names:
        podman("rm", "-f", "-t", "0", *names, check=False)
    volumes = podman("volume", "ls", "--filter", flt, "--format", "{{.Name}}", check=False)
    for volume in volumes.stdout.split():
        podman("volume", "rm", "-f", volume, check=False)


def show_logs(containers: list[Container]) -> None:
    for c in containers:
        logs = podman("logs", "--tail", "40", c.name, check=False)
        print(f"--- {c.name} ---\n{logs.stdout}{logs.stderr}", file=sys.stderr)


# -- the checks -------------------------------------------------------------------------------


def metric_total(url: str, token: str, metric: str) -> float:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric + "{") or line.startswith(metric + " ")
    )


def check_cluster(containers: list[Container], ports: Ports, token: str) -> None:
    import msgpack
    import redis

    producer = next(c for c in containers if c.command[:1] == ["demo-load"])
    cockpit = next(c for c in containers if c.command[:1] == ["cockpit"])
    engines = [c for c in containers if c.command[:1] == ["worker"]]
    jobs = int(producer.command[producer.command.index("--jobs") + 1])
    namespace = producer.env.get("REXEC_NAMESPACE", "default")
    code = exit_code(producer, 300)
    if code != 0:
        raise RunError(f"the producer exited {code}")
    say(f"producer: loaded {jobs} jobs, exit 0")

    metrics = f"http://127.0.0.1:{ports.cockpit}/metrics"
    try:
        urllib.request.urlopen(metrics, timeout=10)
        raise RunError("the cockpit served /metrics without its token")
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise RunError(f"/metrics without a token: HTTP {exc.code}, expected 401") from exc
    started = time.monotonic()
    left = -1.0
    while time.monotonic() - started < DRAIN_WAIT_S:
        for c in [*engines, cockpit]:
            if not running(c):
                raise RunError(f"{c.name} is no longer running")
        left = metric_total(metrics, token, "rexec_jobs")
        if left == 0:
            break
        time.sleep(1.0)
    if left != 0:
        raise RunError(f"{left:.0f} jobs still uncommitted after {DRAIN_WAIT_S:.0f} s")
    say(f"all jobs committed ({time.monotonic() - started:.1f} s after the producer exited)")

    client = redis.Redis(host="127.0.0.1", port=ports.redis)
    deadline = time.monotonic() + 10
    while True:  # the demo's recorder pushes its rows every 50 ms
        rows = [msgpack.unpackb(r) for r in client.lrange(f"rexec:{{{namespace}}}:demo:log", 0, -1)]
        if len(rows) >= jobs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    runs: dict[int, int] = {}
    nodes: set[str] = set()
    for row in rows:
        runs[row[0]] = runs.get(row[0], 0) + 1
        nodes.add(str(row[5]).split(".")[0])
    lost = jobs - len(runs)
    twice = sum(1 for n in runs.values() if n > 1)
    client.close()
    say(f"{len(rows)} executions of {len(runs)} jobs on nodes {sorted(nodes)}: "
        f"{lost} lost, {twice} run twice")  # fmt: skip
    if lost or twice:
        raise RunError(f"{lost} lost, {twice} run twice")
    if len(nodes) != len(engines):
        raise RunError(f"expected {len(engines)} distinct node ids, saw {sorted(nodes)}")

    victim = engines[0]
    podman("kill", "--signal", "TERM", victim.name)
    code = exit_code(victim, (victim.stop_timeout_s or 10) + 20)
    if code != 0:
        raise RunError(f"{victim.name} exited {code} after SIGTERM")
    say(f"{victim.name}: SIGTERM -> exit 0")


def check_bad_configuration(engine: Container, run_id: str, services: Sequence[str]) -> None:
    """Engine containers without a Redis URL, and with an unreachable Redis: each says
    why in its log, stays up and alive, and reports not ready (its health check fails)."""
    free = Ports.free(3)
    cases = {
        "no-url": (
            {k: v for k, v in engine.env.items() if k != "REXEC_REDIS_URL"},
            "not ready: no Redis URL configured",
            "no Redis URL configured",
        ),
        "unreachable": (
            {**engine.env, "REXEC_REDIS_URL": f"redis://127.0.0.1:{free.redis}/0"},
            "waiting for Redis at",
            "waiting for Redis",
        ),
    }
    bad: dict[str, Container] = {}
    for i, (case, (env, _, _)) in enumerate(cases.items()):
        c = dataclasses.replace(
            engine,
            name=f"rexec-ci-{run_id}-{case}-1",
            hostname=f"{case}-1",
            env={**env, "REXEC_HEALTH_PORT": str(free.health[i])},
        )
        podman(*run_args(c, run_id, services))
        bad[case] = c
    for case, c in bad.items():
        _, line, reason = cases[case]
        deadline = time.monotonic() + HEALTH_WAIT_S
        while True:
            if not running(c):
                raise RunError(f"{c.name} exited: a bad configuration must not crash it")
            ready = podman("exec", c.name, *(c.health or []), check=False, timeout=30)
            result = podman("logs", c.name, check=False)
            logs = result.stdout + result.stderr
            if ready.returncode == 1 and reason in ready.stdout and line in logs:
                break
            if time.monotonic() > deadline:
                raise RunError(
                    f"{c.name}: readyz said {ready.stdout.strip()!r}; log lacks {line!r}"
                )
            time.sleep(0.5)
        live = podman("exec", c.name, "python", "-m", "rexec.health", "livez", check=False)
        if live.returncode != 0:
            raise RunError(f"{c.name}: not live: {live.stdout.strip()}")
        first = next(x for x in logs.splitlines() if line in x)
        say(f"{case}: not ready, alive, and says why: {first.split(' ', 3)[-1]!r}")
        podman("rm", "-f", "-t", "0", c.name, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run", "down"])
    parser.add_argument("--run-id", default=secrets.token_hex(4))
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args(argv)
    if args.action == "down":
        down(args.run_id)
        return 0
    started = time.monotonic()
    image = f"localhost/rexec-ci:{args.run_id}"
    token = secrets.token_hex(16)
    env = {**os.environ, "REXEC_COCKPIT_TOKEN": token}
    containers: list[Container] = []
    try:
        build_image(image)
        say(f"built {image} from docker/Dockerfile ({time.monotonic() - started:.0f} s)")
        compose = load_compose()
        replicas = max(
            int((s.get("deploy") or {}).get("replicas", 1)) for s in compose["services"].values()
        )
        ports = Ports.free(replicas)
        containers = plan(
            compose, run_id=args.run_id, image=image, ports=ports, env=env,
            image_health=image_healthcheck(image),
        )  # fmt: skip
        up(containers, args.run_id)
        check_cluster(containers, ports, token)
        engine = next(c for c in containers if c.command[:1] == ["worker"])
        check_bad_configuration(engine, args.run_id, list(compose["services"]))
        say(f"ok ({time.monotonic() - started:.0f} s)")
        return 0
    except (RunError, subprocess.TimeoutExpired, OSError, http.client.HTTPException) as exc:
        print(f"containers: FAILED: {exc}", file=sys.stderr)
        show_logs(containers)
        return 1
    finally:
        if not args.keep:
            down(args.run_id)
            podman("rmi", "-f", image, check=False)


if __name__ == "__main__":
    raise SystemExit(main())

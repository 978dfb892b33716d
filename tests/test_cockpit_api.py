"""The cockpit's JSON API through Starlette's TestClient, against the private real Redis
with real jobs. Every action is checked by reading Redis back through Management."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from rexec import App, JobState
from rexec.cli import main
from rexec.cockpit.app import create_app
from rexec.cockpit.cli import is_loopback
from rexec.metrics import WorkerMetrics
from tests.harness import Cluster

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def rapp(redis_url: str, namespace: str) -> Iterator[App]:
    with App(redis_url, namespace=namespace) as app:
        yield app


@pytest.fixture
def api(rapp: App) -> Iterator[TestClient]:
    with TestClient(create_app(rapp)) as client:
        yield client


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: Any, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    message: str = body["error"]
    for word in words:
        assert word in message, message
    return message


def ids(jobs: list[dict[str, Any]]) -> list[str]:
    return [job["id"] for job in jobs]


def make_incident(app: App, job_type: str = "boom") -> str:
    """A job that failed its last execution, with its traceback."""
    job_id = app.enqueue(job_type, {"n": 1}, retries=1)
    acquired = app.store.acquire_jobs("node-x.0.1", 1, types=[job_type])
    (job,) = acquired.jobs
    state = app.store.fail(
        job,
        ValueError("the gateway said no"),
        details='Traceback (most recent call last):\n  File "jobs.py", line 3\nValueError',
    )
    assert state is JobState.INCIDENT
    return job_id


# -- reads --------------------------------------------------------------------------------------


def test_overview_counts_by_state_and_by_type(api: TestClient, rapp: App) -> None:
    rapp.enqueue_many([{"type": "mail", "payload": i} for i in range(3)])
    rapp.enqueue("report", delay_ms=600_000)
    rapp.management.suspend_job(rapp.enqueue("report"))
    rapp.store.acquire_jobs("node-a.0.1", 1, types=["mail"])
    make_incident(rapp)

    data = ok(api.get("/api/overview"))

    assert data["namespace"] == rapp.namespace
    assert data["by_state"] == rapp.management.counts()
    assert data["by_state"] == {
        "ready": 2,
        "scheduled": 1,
        "locked": 1,
        "suspended": 1,
        "incident": 1,
        "total": 6,
    }
    by_type = data["by_type"]
    assert by_type["mail"] == {
        "ready": 2,
        "scheduled": 0,
        "locked": 1,
        "suspended": 0,
        "incident": 0,
        "total": 3,
    }
    assert by_type["report"]["scheduled"] == 1
    assert by_type["report"]["suspended"] == 1
    assert by_type["boom"]["incident"] == 1
    types = {t["type"]: t for t in data["types"]}
    assert set(types) == {"boom", "mail", "report"}
    assert types["mail"]["counts"] == by_type["mail"]
    assert ok(api.get("/api/types")) == data["types"]


def test_the_queue_lists_ready_jobs_in_acquisition_order(api: TestClient, rapp: App) -> None:
    low = rapp.enqueue("a", priority=1)
    high = rapp.enqueue("b", priority=50)
    first_of_ties = rapp.enqueue("c", priority=10)
    second_of_ties = rapp.enqueue("a", priority=10)
    rapp.enqueue("a", priority=99, delay_ms=600_000)  # scheduled: not in the queue

    queue = ok(api.get("/api/jobs", params={"state": "ready"}))

    assert ids(queue["jobs"]) == [high, first_of_ties, second_of_ties, low]
    assert queue["total"] == 4
    assert queue["more"] is False
    # The queue's head is what a worker acquires next.
    (taken,) = rapp.store.acquire_jobs("node-a.0.1", 1).jobs
    assert taken.id == high


def test_job_list_filters_sorts_and_pages(api: TestClient, rapp: App) -> None:
    pi = rapp.start_process_instance({"order": 7})
    in_pi = rapp.enqueue_many(
        [{"type": "ship", "priority": p, "process_instance_id": pi} for p in (5, 15)]
    )
    others = rapp.enqueue_many([{"type": "ship", "priority": p} for p in (0, 10, 20, 30)])
    mail = rapp.enqueue("mail", priority=25)

    def listed(**params: Any) -> dict[str, Any]:
        return ok(api.get("/api/jobs", params=params))  # type: ignore[no-any-return]

    assert ids(listed(type="mail")["jobs"]) == [mail]
    assert ids(listed(process_instance=pi)["jobs"]) == [in_pi[1], in_pi[0]]
    ranged = listed(priority_min=10, priority_max=25)
    assert [j["priority"] for j in ranged["jobs"]] == [25, 20, 15, 10]
    assert ids(listed(type="ship", priority_max=5)["jobs"]) == [in_pi[0], others[0]]
    assert ids(listed(sort="id")["jobs"]) == sorted([*in_pi, *others, mail], key=int)
    assert ids(listed(sort="-id")["jobs"])[0] == mail
    assert [j["priority"] for j in listed(sort="priority")["jobs"]] == [0, 5, 10, 15, 20, 25, 30]

    first = listed(limit=3)
    second = listed(limit=3, offset=3)
    rest = listed(limit=3, offset=6)
    assert [j["priority"] for j in first["jobs"]] == [30, 25, 20]
    assert [j["priority"] for j in second["jobs"]] == [15, 10, 5]
    assert [j["priority"] for j in rest["jobs"]] == [0]
    assert first["more"] and second["more"] and not rest["more"]
    assert first["total"] == second["total"] == 7
    assert listed(type="ship", limit=1)["total"] == 6

    everything = listed(state="all", limit=500)
    assert len(everything["jobs"]) == 7
    assert everything["total"] == 7


def test_job_detail_shows_payload_exception_and_traceback(api: TestClient, rapp: App) -> None:
    job_id = make_incident(rapp)
    plain = rapp.enqueue("mail", {"to": "ops@example.org", "blob": b"\x00\x01"}, priority=3)

    detail = ok(api.get(f"/api/jobs/{job_id}"))
    assert detail["state"] == "incident"
    assert detail["retries"] == 0
    assert detail["exception"] == "ValueError: the gateway said no"
    assert detail["traceback"].startswith("Traceback (most recent call last):")
    assert detail["payload_preview"] == '{\n  "n": 1\n}'

    other = ok(api.get(f"/api/jobs/{plain}"))
    assert other["priority"] == 3
    assert other["exception"] is None
    assert '"to": "ops@example.org"' in other["payload_preview"]
    assert "<2 bytes>" in other["payload_preview"]
    assert other["payload_bytes"] == len(rapp.management.get_job(plain).payload_raw or b"")  # type: ignore[union-attr]


def test_process_instance_detail(api: TestClient, rapp: App) -> None:
    pi = rapp.start_process_instance({"customer": "ACME", "amount": 12})
    jobs = rapp.enqueue_many([{"type": "bill", "process_instance_id": pi}] * 2)
    rapp.enqueue("bill")  # another instance's, not listed

    data = ok(api.get(f"/api/process-instances/{pi}"))

    assert data["id"] == pi
    assert data["variables"] == {"customer": "ACME", "amount": 12}
    assert data["revision"] == 0
    assert sorted(ids(data["jobs"])) == sorted(jobs)
    assert data["jobs_total"] == 2


# -- actions --------------------------------------------------------------------------------------


def test_set_job_priority_moves_it_to_the_head_of_the_queue(api: TestClient, rapp: App) -> None:
    jobs = rapp.enqueue_many([{"type": "mail", "priority": p} for p in (10, 20, 30)])

    detail = ok(api.put(f"/api/jobs/{jobs[0]}/priority", json={"priority": 100}))

    assert detail["priority"] == 100
    assert rapp.management.get_job(jobs[0]).priority == 100  # type: ignore[union-attr]
    assert ids(ok(api.get("/api/jobs"))["jobs"])[0] == jobs[0]
    big = 2**63 - 1
    ok(api.put(f"/api/jobs/{jobs[1]}/priority", json={"priority": str(big)}))
    assert rapp.management.get_job(jobs[1]).priority == big  # type: ignore[union-attr]


def test_suspend_and_activate_a_job(api: TestClient, rapp: App) -> None:
    job_id = rapp.enqueue("mail")

    assert ok(api.post(f"/api/jobs/{job_id}/suspend", json={}))["state"] == "suspended"
    assert rapp.management.get_job(job_id).state is JobState.SUSPENDED  # type: ignore[union-attr]
    assert rapp.store.acquire_jobs("node-a.0.1", 5).jobs == []

    assert ok(api.post(f"/api/jobs/{job_id}/activate", json={}))["state"] == "ready"
    assert rapp.management.get_job(job_id).state is JobState.READY  # type: ignore[union-attr]


def test_set_retries_resolves_an_incident(api: TestClient, rapp: App) -> None:
    job_id = make_incident(rapp)
    assert ok(api.get("/api/jobs", params={"state": "incident"}))["jobs"][0]["id"] == job_id

    detail = ok(api.put(f"/api/jobs/{job_id}/retries", json={"retries": 2}))

    assert detail["state"] == "ready"
    job = rapp.management.get_job(job_id)
    assert job is not None
    assert (job.state, job.retries) == (JobState.READY, 2)
    assert rapp.management.counts()["incident"] == 0


def test_delete_a_job(api: TestClient, rapp: App) -> None:
    job_id = rapp.enqueue("mail")

    assert ok(api.delete(f"/api/jobs/{job_id}")) == {"deleted": job_id}

    assert rapp.management.get_job(job_id) is None
    refused(api.get(f"/api/jobs/{job_id}"), 404, job_id)
    refused(api.delete(f"/api/jobs/{job_id}"), 404, job_id)


def test_overriding_priority_with_and_without_cascade(api: TestClient, rapp: App) -> None:
    slow = rapp.enqueue_many([{"type": "slow", "priority": 50}] * 2)
    fast = rapp.enqueue("fast", priority=10)

    done = ok(api.put("/api/types/slow/overriding-priority", json={"priority": -5}))
    assert done == {"type": "slow", "overriding_priority": -5, "suspended": False, "changed": None}
    assert [j.priority for j in rapp.store.get_jobs(slow)] == [50, 50]  # existing ones keep it
    new = rapp.enqueue("slow", priority=99)
    assert rapp.management.get_job(new).priority == -5  # type: ignore[union-attr]

    cascaded = ok(
        api.put("/api/types/slow/overriding-priority", json={"priority": -7, "cascade": True})
    )
    assert cascaded["changed"] == 3
    assert {j.priority for j in rapp.store.get_jobs([*slow, new])} == {-7}
    assert ids(ok(api.get("/api/jobs"))["jobs"]) == [fast, *slow, new]

    cleared = ok(api.delete("/api/types/slow/overriding-priority"))
    assert cleared["overriding_priority"] is None
    info = {i.type: i for i in rapp.management.job_definitions()}
    assert info["slow"].overriding_priority is None
    assert rapp.management.get_job(rapp.enqueue("slow", priority=4)).priority == 4  # type: ignore[union-attr]


def test_suspend_and_activate_a_job_type(api: TestClient, rapp: App) -> None:
    slow = rapp.enqueue_many([{"type": "slow"}] * 3)
    fast = rapp.enqueue("fast")

    done = ok(api.post("/api/types/slow/suspend", json={}))
    assert (done["suspended"], done["changed"]) == (True, 3)
    assert {j.state for j in rapp.store.get_jobs(slow)} == {JobState.SUSPENDED}
    assert [j.id for j in rapp.store.acquire_jobs("node-a.0.1", 10).jobs] == [fast]

    again = ok(api.post("/api/types/slow/activate", json={"include_jobs": True}))
    assert (again["suspended"], again["changed"]) == (False, 3)
    assert {j.state for j in rapp.store.get_jobs(slow)} == {JobState.READY}

    only_definition = ok(api.post("/api/types/slow/suspend", json={"include_jobs": False}))
    assert only_definition["changed"] is None
    assert {j.state for j in rapp.store.get_jobs(slow)} == {JobState.READY}
    assert rapp.store.acquire_jobs("node-a.0.1", 10).jobs == []
    ok(api.post("/api/types/slow/activate", json={}))
    assert len(rapp.store.acquire_jobs("node-a.0.1", 10).jobs) == 3


# -- bad input ------------------------------------------------------------------------------------


def test_unknown_ids_are_404(api: TestClient, rapp: App) -> None:
    refused(api.get("/api/jobs/987654"), 404, "987654")
    refused(api.put("/api/jobs/987654/priority", json={"priority": 1}), 404, "987654")
    refused(api.put("/api/jobs/987654/retries", json={"retries": 1}), 404)
    refused(api.post("/api/jobs/987654/suspend", json={}), 404)
    refused(api.get("/api/process-instances/p987654"), 404, "p987654")
    refused(api.get("/api/no/such/route"), 404, "/api/no/such/route")
    refused(api.delete("/api/types/slow/suspend"), 405, "DELETE")


@pytest.mark.parametrize("priority", ["high", 1.5, True, None, "", "1e3", 2**63, -(2**63) - 1])
def test_a_priority_must_be_a_64_bit_integer(api: TestClient, rapp: App, priority: Any) -> None:
    job_id = rapp.enqueue("mail", priority=3)

    message = refused(api.put(f"/api/jobs/{job_id}/priority", json={"priority": priority}), 400)
    refused(api.put("/api/types/mail/overriding-priority", json={"priority": priority}), 400)

    assert "priority" in message
    assert rapp.management.get_job(job_id).priority == 3  # type: ignore[union-attr]
    assert rapp.management.job_definitions()[0].overriding_priority is None


def test_other_bad_input_is_400(api: TestClient, rapp: App) -> None:
    job_id = rapp.enqueue("mail")
    refused(api.get("/api/jobs/not-a-number"), 400, "not a job id")
    refused(api.put(f"/api/jobs/{job_id}/priority", json={}), 400, "'priority'")
    refused(api.put(f"/api/jobs/{job_id}/retries", json={"retries": -1}), 400, "retries")
    refused(api.put(f"/api/jobs/{job_id}/retries", json={"retries": "many"}), 400, "retries")
    refused(
        api.put(
            f"/api/jobs/{job_id}/priority",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
        "not valid JSON",
    )
    refused(api.put(f"/api/jobs/{job_id}/priority", json=[1]), 400, "JSON object")
    refused(api.get("/api/jobs", params={"state": "sleeping"}), 400, "unknown state", "ready")
    refused(api.get("/api/jobs", params={"sort": "colour"}), 400, "unknown sort")
    refused(api.get("/api/jobs", params={"limit": "0"}), 400, "limit")
    refused(api.get("/api/jobs", params={"priority_min": "x"}), 400, "priority_min")
    refused(api.get("/api/jobs", params={"priority_min": "5", "priority_max": "1"}), 400, "above")
    refused(api.get("/api/jobs", params={"colour": "red"}), 400, "unknown parameter")
    refused(api.get("/api/jobs", params={"type": "bad type!"}), 400, "job type")
    refused(api.get("/api/process-instances/a|b"), 400, "process instance")
    refused(api.post("/api/types/bad type!/suspend", json={}), 400, "job type")
    refused(
        api.put("/api/types/mail/overriding-priority", json={"priority": 1, "cascade": "yes"}),
        400,
        "cascade",
    )
    assert rapp.management.job_definitions()[0].overriding_priority is None


def test_actions_must_be_sent_as_json(api: TestClient, rapp: App) -> None:
    job_id = rapp.enqueue("mail")
    # What a cross-site form could send without the browser asking the cockpit first.
    refused(
        api.post(
            f"/api/jobs/{job_id}/suspend", content=b"", headers={"content-type": "text/plain"}
        ),
        415,
        "application/json",
    )
    assert rapp.management.get_job(job_id).state is JobState.READY  # type: ignore[union-attr]


def test_redis_down_is_503(namespace: str) -> None:
    app = App("redis://127.0.0.1:1/0", namespace=namespace)
    with app, TestClient(create_app(app)) as client:
        refused(client.get("/api/overview"), 503, "cannot reach Redis")


# -- auth --------------------------------------------------------------------------------------


def test_a_configured_token_is_required_on_the_api_and_metrics(rapp: App) -> None:
    job_id = rapp.enqueue("mail", priority=1)
    with TestClient(create_app(rapp, token=TOKEN)) as client:
        refused(client.get("/api/overview"), 401, "token")
        assert client.get("/api/overview").headers["www-authenticate"].startswith("Bearer")
        refused(client.get("/metrics"), 401)
        wrong = {"Authorization": "Bearer nope"}
        refused(
            client.put(f"/api/jobs/{job_id}/priority", json={"priority": 9}, headers=wrong), 401
        )
        refused(client.get("/api/jobs", headers={"Authorization": TOKEN}), 401)
        assert rapp.management.get_job(job_id).priority == 1  # type: ignore[union-attr]

        good = {"Authorization": f"Bearer {TOKEN}"}
        ok(client.put(f"/api/jobs/{job_id}/priority", json={"priority": 9}, headers=good))
        assert rapp.management.get_job(job_id).priority == 9  # type: ignore[union-attr]
        assert client.get("/metrics", headers=good).status_code == 200
        # The page itself is public: it asks for the token.
        page = client.get("/")
        assert page.status_code == 200
        assert "cockpit.js" in page.text
        assert client.get("/static/cockpit.js").status_code == 200


def test_without_a_token_only_loopback_host_names_are_answered(rapp: App) -> None:
    asgi = create_app(rapp, allowed_hosts={"127.0.0.1", "localhost", "[::1]"})
    with TestClient(asgi, base_url="http://127.0.0.1:8080") as client:
        ok(client.get("/api/overview"))
    with TestClient(asgi, base_url="http://[::1]:8080") as client:
        ok(client.get("/api/overview"))
    with TestClient(asgi, base_url="http://evil.example:8080") as client:
        refused(client.get("/api/overview"), 400, "evil.example")


def test_the_ui_is_served(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for asset, kind in (("cockpit.js", "javascript"), ("cockpit.css", "text/css")):
        assert f"/static/{asset}" in page.text
        response = api.get(f"/static/{asset}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]


# -- the cluster and metrics ----------------------------------------------------------------------


def flush(app: App, metrics: WorkerMetrics) -> None:
    pipe = app.client.pipeline(transaction=False)
    metrics.flush(pipe, app.store.keys)
    pipe.execute()


def test_cluster_counters_become_rates(api: TestClient, rapp: App) -> None:
    worker = WorkerMetrics("host.example-7.0.77")
    worker.add("job-successful", 10)
    flush(rapp, worker)

    first = ok(api.get("/api/cluster"))
    assert first["counters"]["job-successful"] == 10
    assert first["rates"] is None  # nothing to compare with yet

    worker.add("job-successful", 30)
    worker.add("job-acquired-failure", 4)
    flush(rapp, worker)
    time.sleep(1.05)  # rates compare samples at least a second apart
    second = ok(api.get("/api/cluster"))
    assert second["counters"]["job-successful"] == 40
    assert second["rates"]["job-successful"] > 0
    assert second["rates"]["job-acquired-failure"] > 0
    assert second["throughput_per_s"] == pytest.approx(second["rates"]["job-successful"])
    assert 1.0 <= second["window_s"] < 30


@pytest.mark.slow
def test_a_real_node_shows_in_the_cluster_view_and_metrics(cluster: Cluster) -> None:
    app = cluster.app
    with TestClient(create_app(app)) as client:
        cluster.start_node(processes=2, metrics_interval_s=0.2)
        cluster.wait_for_workers(2)
        app.enqueue_many([{"type": "work", "payload": {"i": i}} for i in range(20)])
        cluster.wait_for(lambda: cluster.stats("job-successful") >= 20, "20 jobs done")

        view = ok(client.get("/api/cluster"))
        assert view["workers"] == 2
        (node,) = view["nodes"]
        assert len(node["workers"]) == 2
        assert node["counters"]["job-successful"] == 20
        assert {w["heartbeat_age_ms"] < 10_000 for w in node["workers"]} == {True}
        assert sum(b["count"] for b in view["histograms"]["pickup-latency"]) == 20

        text = client.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        done = [s for s in families["rexec_job_successful"].samples if s.name.endswith("_total")]
        assert [(s.labels["node"], s.value) for s in done] == [(node["node"], 20.0)]
        assert {s.labels["namespace"] for s in done} == {app.namespace}
        inf = [
            s
            for s in families["rexec_pickup_latency_seconds"].samples
            if s.labels.get("le") == "+Inf"
        ]
        assert [s.value for s in inf] == [20.0]


# -- the command -----------------------------------------------------------------------------


def test_the_command_refuses_a_public_host_without_a_token() -> None:
    runner = CliRunner(env={"REXEC_COCKPIT_TOKEN": None})
    result = runner.invoke(main, ["cockpit", "--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code == 2, result.output
    assert "--token" in result.output and "REXEC_COCKPIT_TOKEN" in result.output
    assert "cockpit" in runner.invoke(main, ["--help"]).output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.org", False),
        ("::", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_types_show_deployment_and_conflict(api: TestClient, rapp: App) -> None:
    first = App.with_client(rapp.client, namespace=rapp.namespace)
    first.job("mail", priority=1)(lambda ctx, p: None)
    first.deploy(app_path="one:app")
    second = App.with_client(rapp.client, namespace=rapp.namespace)
    second.job("mail", priority=2)(lambda ctx, p: None)
    second.deploy(app_path="two:app")
    rapp.enqueue("adhoc")
    types = {t["type"]: t for t in ok(api.get("/api/types"))}
    assert types["mail"]["deployed"] and types["mail"]["deployed_by"] == "two:app"
    assert "one:app" in types["mail"]["conflict"] and types["mail"]["priority_rule"] == "2"
    assert not types["adhoc"]["deployed"] and types["adhoc"]["conflict"] == ""
    refused(api.post("/api/types/typo/suspend", json={}), 404, "typo")


# -- deep pages, the process-instance index, out-of-range numbers --------------------------


@pytest.fixture(scope="module")
def deep(redis_server: Any) -> Iterator[tuple[App, dict[str, Any]]]:
    """6,500 jobs of three types and mixed priorities (plus scheduled jobs, incidents
    and a process instance), enqueued once for the tests below."""
    import uuid

    with App(redis_server.url, namespace="deep" + uuid.uuid4().hex[:8]) as app:
        pi = app.start_process_instance({"order": 1})
        specs = [
            {"type": ("mail", "ship", "bill")[i % 3], "priority": (i * 7919) % 97, "payload": i}
            for i in range(6_500)
        ]
        ready = app.enqueue_many(specs)
        later = app.enqueue_many([{"type": "mail", "delay_ms": 3_600_000 + i} for i in range(600)])
        mine = app.enqueue_many([{"type": "ship", "process_instance_id": pi}] * 3)
        with TestClient(create_app(app)) as client:
            yield app, {"client": client, "ready": ready, "later": later, "pi": pi, "mine": mine}


def walk(client: TestClient, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page, following the 'next' cursors."""
    found: list[dict[str, Any]] = []
    after = None
    for _ in range(1_000):
        query = {**params, "limit": limit, **({"after": after} if after else {})}
        page = ok(client.get("/api/jobs", params=query))
        found += page["jobs"]
        after = page["next"]
        assert page["more"] == (after is not None)
        if after is None:
            return found
    raise AssertionError("the pages never ended")


def test_keyset_pages_reach_every_job_at_any_depth(deep: tuple[App, dict[str, Any]]) -> None:
    app, d = deep
    client = d["client"]
    jobs = walk(client, 500, state="ready")
    assert len(jobs) == 6_503
    keys = [(-j["priority"], j["due_ms"], int(j["id"])) for j in jobs]
    assert keys == sorted(keys)  # queue order, across job types, page after page
    assert len({j["id"] for j in jobs}) == 6_503
    # the same jobs as Management lists (it lists type by type; the cockpit merges)
    expected = [j["id"] for j in jobs]
    assert set(expected) == {j.id for j in app.management.jobs(state="ready", limit=10_000)}
    # offsets past 5,000 work too (they used to say "no more" at 4,950)
    page = ok(client.get("/api/jobs", params={"state": "ready", "offset": 6_450, "limit": 50}))
    assert [j["id"] for j in page["jobs"]] == expected[6_450:6_500]
    assert page["more"] is True and page["total"] == 6_503
    # one type, every state, and a priority range: filtered pages stay exact
    ship = walk(client, 400, state="all", type="ship")
    assert len(ship) == sum(1 for i in range(6_500) if i % 3 == 1) + 3
    assert {j["type"] for j in ship} == {"ship"}
    high = walk(client, 300, state="ready", priority_min=90)
    assert high and all(j["priority"] >= 90 for j in high)
    assert len(high) == sum(1 for j in jobs if j["priority"] >= 90)
    later = walk(client, 250, state="scheduled")
    assert [j["id"] for j in later] == d["later"]


def test_keyset_cursors_survive_changes_and_reject_garbage(
    deep: tuple[App, dict[str, Any]],
) -> None:
    app, d = deep
    client = d["client"]
    first = ok(client.get("/api/jobs", params={"state": "scheduled", "limit": 10}))
    cursor = first["next"]
    last_id = first["jobs"][-1]["id"]
    app.management.delete_job(last_id)  # the cursor's own job goes
    try:
        second = ok(client.get("/api/jobs", params={"state": "scheduled", "after": cursor}))
        assert second["jobs"][0]["id"] == d["later"][10]
    finally:
        app.enqueue("mail", delay_ms=7_200_000)  # keeps the count of scheduled jobs
    for bad in ("zz", "r:nothex", "d:x:y", "x" * 400, "l:"):
        if bad == "l:":
            refused(client.get("/api/jobs", params={"state": "ready", "after": bad}), 400, "for")
        else:
            refused(client.get("/api/jobs", params={"after": bad}), 400, "cursor")
    refused(client.get("/api/jobs", params={"after": cursor, "offset": 5}), 400, "not both")
    refused(client.get("/api/jobs", params={"after": cursor, "sort": "id"}), 400, "queue order")


def test_process_instance_view_reads_its_index_not_every_job(
    deep: tuple[App, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, d = deep

    def no_scans(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the process-instance view scanned the job records")

    monkeypatch.setattr(type(app.store), "scan_job_ids", no_scans)
    view = ok(d["client"].get(f"/api/process-instances/{d['pi']}"))
    assert [j["id"] for j in view["jobs"]] == d["mine"]
    listed = ok(d["client"].get("/api/jobs", params={"process_instance": d["pi"]}))
    assert sorted(j["id"] for j in listed["jobs"]) == d["mine"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (1e23, "out of range"),
        ("100000000000000000000000", "out of range"),
        (2**63, "out of range"),
        (-(2**63) - 1, "out of range"),
        ("1e23", "must be an integer"),
        (1.5, "must be an integer"),
    ],
)
def test_out_of_range_numbers_say_so(api: TestClient, rapp: App, value: Any, words: str) -> None:
    job_id = rapp.enqueue("mail")
    message = refused(api.put(f"/api/jobs/{job_id}/priority", json={"priority": value}), 400)
    assert words in message and "priority" in message
    refused(api.get("/api/jobs", params={"limit": "9" * 30}), 400, "out of range")
    refused(api.get("/api/jobs", params={"limit": "501"}), 400, "limit must be 1..500")


def test_a_finished_job_says_what_became_of_it(rapp: App, namespace: str) -> None:
    from rexec.store import Store

    kept = Store(rapp.client, namespace, history_max_len=10)
    job_id = rapp.enqueue("mail")
    (job,) = kept.acquire_jobs("w", 1, lock_ms=5000).jobs
    kept.complete(job)
    with TestClient(create_app(rapp)) as client:
        refused(client.get(f"/api/jobs/{job_id}"), 404, "no longer queued: completed")
        refused(client.get("/api/jobs/999999"), 404, "no job")


def test_a_finished_job_with_a_kept_result_says_how_it_ended(rapp: App) -> None:
    from rexec.codec import pack

    @rapp.job("kept", keep_result=60, exclusive=False)
    def kept(ctx: Any, payload: Any) -> str:
        return "sent"

    rapp.deploy()
    handle = kept.enqueue()
    (job,) = rapp.store.acquire_jobs("w", 1, lock_ms=5000, types=["kept"]).jobs
    rapp.store.complete_many([job], [pack("sent")])
    with TestClient(create_app(rapp)) as client:
        refused(
            client.get(f"/api/jobs/{handle.id}"),
            404,
            "no longer queued: completed after 1 attempt(s)",
            "returned 'sent'",
        )

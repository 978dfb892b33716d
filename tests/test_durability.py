"""durability="replicated": every acknowledged write waits for a replica (WAIT 1), and
says so when none confirms. The private redis-server has no replica, so each such write
is made on it and then refused confirmation; tests/test_topologies.py runs the same
writes on topologies with replicas."""

from __future__ import annotations

import pytest

from rexec import App
from rexec.errors import ReplicationTimeoutError, RexecError, ValidationError
from rexec.settings import WorkerSettings, load_app
from tests.harness import Cluster


@pytest.fixture
def lonely(redis_url: str, namespace: str) -> App:
    return App(redis_url, namespace=namespace, durability="replicated", replication_timeout_ms=20)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="durability must be"):
        App("redis://localhost", durability="fast")
    for bad in (0, -1, 600_001, True, 1.5):
        with pytest.raises(ValidationError, match="replication_timeout_ms"):
            App("redis://localhost", replication_timeout_ms=bad)  # type: ignore[arg-type]


def test_an_unconfirmed_enqueue_raises_and_says_the_job_is_on_the_master(lonely: App) -> None:
    with pytest.raises(ReplicationTimeoutError, match="no replica confirmed") as info:
        lonely.enqueue("t", 1)
    assert isinstance(info.value, RexecError)
    job_id = info.value.reply
    assert lonely.store.get_job(str(int(job_id))) is not None  # type: ignore[call-overload]
    assert lonely.management.counts()["ready"] == 1


def test_a_streamed_enqueue_is_confirmed_once_after_its_last_chunk(lonely: App) -> None:
    with pytest.raises(ReplicationTimeoutError) as info:
        lonely.enqueue_many([{"type": "t"}] * 2500)  # three chunks on one connection
    assert len(info.value.reply) == 3  # type: ignore[arg-type]
    assert lonely.management.counts()["ready"] == 2500


def test_instances_and_operator_changes_wait_too(lonely: App, redis_url: str) -> None:
    plain = App(redis_url, namespace=lonely.namespace)
    pi = plain.start_process_instance({})
    job_id = plain.enqueue("t")
    lonely.job("t")(lambda ctx, payload: None)
    for write in (
        lambda: lonely.start_process_instances([{}]),
        lambda: lonely.end_process_instance(pi),
        lambda: lonely.management.set_job_priority(job_id, 5),
        lonely.deploy,
    ):
        with pytest.raises(ReplicationTimeoutError):
            write()
    assert plain.store.get_job(job_id).priority == 5  # type: ignore[union-attr]
    # Reads and the default durability never wait.
    assert plain.end_process_instance(pi) is False
    assert lonely.store.get_job(job_id) is not None
    plain.close()


def test_the_worker_takes_the_durability_from_its_settings(namespace: str) -> None:
    settings = WorkerSettings(
        app_path="tests.apps.recording:app",
        redis_url="redis://localhost:1/0",
        namespace=namespace,
        durability="replicated",
        replication_timeout_ms=250,
    )
    app = load_app(settings)
    try:
        assert (app.durability, app.replication_timeout_ms) == ("replicated", 250)
        assert app.store.durability == "replicated"
    finally:
        app.durability, app.replication_timeout_ms = "default", 1000
    with pytest.raises(ValidationError, match="durability"):
        load_app(WorkerSettings(app_path="tests.apps.recording:app", durability="eventual"))


def test_a_worker_whose_commits_are_not_confirmed_says_so_and_goes_on(cluster: Cluster) -> None:
    ids = cluster.app.enqueue_many([{"type": "work", "exclusive": False}] * 5)
    cluster.start_node(processes=1, durability="replicated", replication_timeout_ms=20)
    cluster.wait_for(lambda: cluster.app.management.counts()["total"] == 0, "every job done")
    assert sorted(r["id"] for r in cluster.records("end")) == sorted(ids)
    cluster.wait_for(lambda: cluster.stats("job-successful") == 5, "5 successes counted")
    assert cluster.stats("job-failed") == 0
    cluster.wait_for(lambda: "not confirmed by a replica" in cluster.node_logs(), "the warning")
    assert "durability replicated" in cluster.node_logs()

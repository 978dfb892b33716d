"""Job definitions live in Redis (issue 10): deploy, resolution at every creation path,
declarative priority rules, set_variables, suspension, unknown types, wake-ups.

Contract tests run on fakeredis and a real redis-server (the ``client`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from rexec import (
    App,
    JobState,
    NewJob,
    OptimisticLockingError,
    PriorityRuleUnavailableError,
    ProcessInstanceNotFoundError,
    UnknownJobTypeError,
    ValidationError,
    from_variable,
)
from rexec.codec import PRIORITY_MAX, priority_key
from rexec.context import JobContext
from rexec.definitions import parse_definition, worker_types
from rexec.errors import ConfigurationError
from rexec.rules import FromVariable, encode_rule, evaluate, plain_forms
from rexec.wakeup import WakeFilter, parse, relevant


def noop(ctx: JobContext, payload: Any) -> None:
    pass


def deployer(client: redis.Redis, namespace: str, path: str = "shop.jobs:app") -> App:
    """An app with handlers that deploys its definitions (as `rexec worker` does)."""
    app = App.with_client(client, namespace=namespace)
    app.job("slow", priority=5)(noop)
    app.job("hang", retry_cycle="R1/PT1S")(noop)
    app.job("waits", retry_cycle="PT1M,PT5M")(noop)
    app.job("loose", exclusive=False)(noop)
    app.job("tiered", priority=from_variable("tier", {"gold": 100, "silver": 50}, default=1))(noop)
    app.job("scored", priority=from_variable("score"))(noop)
    app.job("flagged", priority=from_variable("urgent", {True: 9, False: -9}, default=3))(noop)
    app.job("pyrule", priority=lambda payload, variables: 77)(noop)
    app.deploy(app_path=path)
    return app


@pytest.fixture
def producer(client: redis.Redis, namespace: str) -> App:
    """A producer without any handler (a web process)."""
    return App.with_client(client, namespace=namespace)


def job_of(app: App, job_id: str) -> Any:
    job = app.management.get_job(job_id)
    assert job is not None
    return job


# -- pure parts ----------------------------------------------------------------------------


class TestRulesPure:
    def test_from_variable_validates(self) -> None:
        with pytest.raises(ValidationError):
            from_variable("")
        with pytest.raises(ValidationError):
            from_variable("x", {1: 5})  # type: ignore[dict-item]
        with pytest.raises(ValidationError):
            from_variable("x", {"a": 2**63})
        with pytest.raises(ValidationError):
            from_variable("x", default=-(2**63) - 1)

    def test_evaluate(self) -> None:
        rule = from_variable("v", {"a": 10, True: 20}, default=-1)
        assert evaluate(rule, {"v": 5}) == 5
        assert evaluate(rule, {"v": "a"}) == 10
        assert evaluate(rule, {"v": "b"}) == -1
        assert evaluate(rule, {"v": True}) == 20
        assert evaluate(rule, {"v": False}) == -1
        assert evaluate(rule, {}) == -1
        assert evaluate(rule, {"v": 2**63}) == -1  # out of range: the default
        assert evaluate(rule, {"v": 1.5}) == -1
        assert evaluate(rule, {"v": 1}) == 1  # an int, not the boolean True

    def test_encodings_carry_no_record_separator(self) -> None:
        rule = from_variable("na|me", {"a|b": 1, False: 2})
        assert "|" not in encode_rule(rule)
        assert "|" not in plain_forms({"x|y": "p|q", "n": 3, "b": True})
        assert plain_forms({"f": 1.5, "l": [1], "big": 2**64}) == ""
        assert encode_rule(lambda p, v: 1) == "py"
        assert encode_rule(5) == "c" + priority_key(5)
        assert encode_rule(None) == ""

    def test_worker_types(self) -> None:
        assert worker_types({"b", "a"}) == ("a", "b")
        assert worker_types({"a", "b"}, ("b",)) == ("b",)
        with pytest.raises(ConfigurationError, match="zz"):
            worker_types({"a"}, ("zz",))
        with pytest.raises(ConfigurationError):
            worker_types(set())

    def test_wakeup_relevance(self) -> None:
        mine = WakeFilter(frozenset({"a"}), priority_min=0, priority_max=10)
        assert relevant(b"1", mine)  # an old-style or unknown message wakes everyone
        assert relevant(b"garbage", mine)
        assert relevant(f"a|{priority_key(5)}".encode(), mine)
        assert not relevant(f"b|{priority_key(5)}".encode(), mine)
        assert not relevant(f"a|{priority_key(11)}".encode(), mine)
        assert not relevant(f"a|{priority_key(-1)}".encode(), mine)
        assert relevant(f"b|{priority_key(5)} a|{priority_key(0)}", mine)
        assert relevant(f"b|{priority_key(5)}", WakeFilter())
        assert parse("x|" + priority_key(1)) == [("x", priority_key(1))]

    def test_unparseable_definition_is_skipped(self) -> None:
        assert parse_definition("t", "garbage") is None
        assert parse_definition("t", "x|0|1|||c|fp|1|h|a||||") is None


# -- deploy and conflicts ----------------------------------------------------------------------


class TestDeploy:
    def test_deploy_statuses_and_conflict(self, client: redis.Redis, namespace: str) -> None:
        a = App.with_client(client, namespace=namespace)
        a.job("shared", priority=1)(noop)
        a.job("mine")(noop)
        assert a.deploy(app_path="a:app") == {"mine": "new", "shared": "new"}
        assert a.deploy(app_path="a:app") == {"mine": "unchanged", "shared": "unchanged"}
        b = App.with_client(client, namespace=namespace)
        b.job("shared", priority=2)(noop)
        assert b.deploy(app_path="b:app") == {"shared": "conflict"}
        infos = {i.type: i for i in a.management.job_definitions()}
        assert infos["shared"].app == "b:app" and infos["shared"].priority_rule == "2"
        assert "a:app" in infos["shared"].conflict
        assert infos["mine"].conflict == "" and infos["mine"].deployed
        # The last deploy wins: new jobs get b's priority.
        assert job_of(a, a.enqueue("shared")).priority == 2
        # The same app deploying a new version is a change, not a conflict.
        c = App.with_client(client, namespace=namespace)
        c.job("mine", priority=3)(noop)
        assert c.deploy(app_path="a:app") == {"mine": "changed"}
        assert {i.type: i for i in a.management.job_definitions()}["mine"].conflict == ""

    def test_deploy_is_all_or_nothing_on_bad_input(self, producer: App) -> None:
        with pytest.raises(Exception, match="BAD_ARGUMENT"):
            producer.store.deploy(
                [("ok", "3|0|1|||", "fp", "h", "a"), ("bad", "x", "fp", "h", "a")]
            )
        assert producer.store.definitions() == {}

    def test_operator_state_survives_a_deploy(self, client: redis.Redis, namespace: str) -> None:
        app = deployer(client, namespace)
        app.management.set_overriding_job_priority("slow", 99)
        app.management.suspend_job_definition("slow", include_jobs=False)
        deployer(client, namespace)
        info = {i.type: i for i in app.management.job_definitions()}["slow"]
        assert info.overriding_priority == 99 and info.suspended


# -- every creation path resolves from the store ----------------------------------------------


class TestResolution:
    def test_handlerless_producer_gets_stored_priority_retries_exclusive(
        self, client: redis.Redis, namespace: str, producer: App
    ) -> None:
        deployer(client, namespace)
        pi = producer.start_process_instance({})
        slow = job_of(producer, producer.enqueue("slow", process_instance_id=pi))
        assert (slow.priority, slow.retries, slow.exclusive) == (5, 3, True)
        hang = job_of(producer, producer.enqueue("hang"))
        assert hang.retries == 1
        loose = job_of(producer, producer.enqueue("loose", process_instance_id=pi))
        assert loose.exclusive is False
        # Explicit values still win (SPEC §4 level 2), and bulk enqueue resolves too.
        explicit = job_of(producer, producer.enqueue("slow", priority=-3, retries=9))
        assert (explicit.priority, explicit.retries) == (-3, 9)
        ids = producer.enqueue_many([{"type": "slow"}, {"type": "hang"}])
        assert [job_of(producer, i).priority for i in ids] == [5, 0]
        raw = producer.store.enqueue([NewJob("slow")])
        assert job_of(producer, raw[0]).priority == 5

    def test_stored_definition_beats_the_producers_own(
        self, client: redis.Redis, namespace: str
    ) -> None:
        deployer(client, namespace)
        stale = App.with_client(client, namespace=namespace)
        stale.job("slow", priority=1, retry_cycle="R9/PT0S", exclusive=False)(noop)
        job = job_of(
            stale, stale.enqueue("slow", process_instance_id=stale.start_process_instance())
        )
        assert (job.priority, job.retries, job.exclusive) == (5, 3, True)

    def test_without_definitions_the_producers_own_apply(self, producer: App) -> None:
        """Migration: a namespace nobody deployed to behaves as before."""
        producer.job("local", priority=4, retry_cycle="R6/PT0S", exclusive=False)(noop)
        pi = producer.start_process_instance({})
        job = job_of(producer, producer.enqueue("local", process_instance_id=pi))
        assert (job.priority, job.retries, job.exclusive) == (4, 6, False)
        bare = job_of(producer, producer.enqueue("unknown"))
        assert (bare.priority, bare.retries, bare.exclusive) == (0, 3, True)

    def test_python_rule_unavailable_to_other_producers(
        self, client: redis.Redis, namespace: str, producer: App
    ) -> None:
        owner = deployer(client, namespace)
        before = producer.management.counts()["total"]
        with pytest.raises(PriorityRuleUnavailableError, match="pyrule"):
            producer.enqueue("pyrule")
        with pytest.raises(PriorityRuleUnavailableError):
            producer.enqueue_many([{"type": "slow"}, {"type": "pyrule"}])
        assert producer.management.counts()["total"] == before  # nothing written
        assert job_of(owner, owner.enqueue("pyrule")).priority == 77
        assert job_of(producer, producer.enqueue("pyrule", priority=1)).priority == 1
        producer.management.set_overriding_job_priority("pyrule", 8)
        assert job_of(producer, producer.enqueue("pyrule")).priority == 8

    def test_follow_ups_forks_and_joins_resolve_from_the_store(
        self, client: redis.Redis, namespace: str
    ) -> None:
        deployer(client, namespace)
        worker_app = App.with_client(client, namespace=namespace)
        worker_app.job("start")(noop)  # knows nothing of "slow" or "hang"
        pi = worker_app.start_process_instance({"tier": "gold"})
        worker_app.enqueue("start", process_instance_id=pi)
        (job,) = worker_app.store.acquire_jobs("w", 1, types=["start"]).jobs
        ctx = JobContext(job, worker_app, "w")
        ctx.enqueue("slow")
        ctx.fork([{"type": "hang"}, {"type": "tiered"}], join="hang")
        worker_app.store.commit(job, ctx.effects())
        jobs = {j.type: j for j in worker_app.management.jobs()}
        assert jobs["slow"].priority == 5
        assert jobs["hang"].retries == 1
        assert jobs["tiered"].priority == 100
        # The join job is created on the last arrival, resolved then.
        for branch in worker_app.store.acquire_jobs("w", 10, types=["hang", "tiered"]).jobs:
            worker_app.store.complete(branch)
        (joined,) = [j for j in worker_app.management.jobs() if j.type == "hang"]
        assert joined.retries == 1

    def test_commit_refuses_a_python_rule_it_lacks_and_writes_nothing(
        self, client: redis.Redis, namespace: str
    ) -> None:
        deployer(client, namespace)
        worker_app = App.with_client(client, namespace=namespace)
        worker_app.job("start")(noop)
        worker_app.enqueue("start")
        (job,) = worker_app.store.acquire_jobs("w", 1, types=["start"]).jobs
        ctx = JobContext(job, worker_app, "w")
        ctx.enqueue("pyrule")
        with pytest.raises(PriorityRuleUnavailableError):
            worker_app.store.commit(job, ctx.effects())
        assert job_of(worker_app, job.id).state is JobState.LOCKED
        assert worker_app.management.counts()["total"] == 1


class TestStoredRetryCycle:
    def test_fail_waits_per_stored_cycle_for_every_caller(
        self, client: redis.Redis, namespace: str, producer: App
    ) -> None:
        deployer(client, namespace)
        job_id = producer.enqueue("waits")
        assert job_of(producer, job_id).retries == 3
        job = producer.store.acquire_jobs("w", 1).jobs[0]
        now = producer.store.time_ms()
        assert producer.store.fail(job, "x") is JobState.SCHEDULED  # no cycle passed
        failed = job_of(producer, job_id)
        assert now + 60_000 - 50 <= failed.due_ms <= now + 60_000 + 1000

    def test_cli_like_producer_runs_hang_once(
        self, client: redis.Redis, namespace: str, producer: App
    ) -> None:
        deployer(client, namespace)
        job_id = producer.store.enqueue([NewJob("hang")])[0]
        job = producer.store.acquire_jobs("w", 1).jobs[0]
        assert producer.store.fail(job, "timeout") is JobState.INCIDENT
        assert job_of(producer, job_id).retries == 0


# -- declarative rules --------------------------------------------------------------------------


class TestFromVariable:
    @pytest.mark.parametrize(
        ("variables", "expected"),
        [
            ({"tier": "gold"}, 100),
            ({"tier": "silver"}, 50),
            ({"tier": "bronze"}, 1),
            ({}, 1),
            ({"tier": 42}, 42),
            ({"tier": -(2**63)}, -(2**63)),
            ({"tier": 2**63}, 1),  # out of range: the default
            ({"tier": 2.5}, 1),
            ({"tier": None}, 1),
            ({"tier": "x" * 201}, 1),
        ],
    )
    def test_type_rule(
        self,
        client: redis.Redis,
        namespace: str,
        producer: App,
        variables: dict[str, Any],
        expected: int,
    ) -> None:
        deployer(client, namespace)
        pi = producer.start_process_instance(variables)
        assert job_of(producer, producer.enqueue("tiered", process_instance_id=pi)).priority == (
            expected
        )
        assert evaluate(
            from_variable("tier", {"gold": 100, "silver": 50}, default=1), variables
        ) == (expected)

    def test_booleans_and_missing_instance(
        self, client: redis.Redis, namespace: str, producer: App
    ) -> None:
        deployer(client, namespace)
        yes = producer.start_process_instance({"urgent": True})
        no = producer.start_process_instance({"urgent": False})
        one = producer.start_process_instance({"urgent": 1})
        get = lambda pi: job_of(producer, producer.enqueue("flagged", process_instance_id=pi))  # noqa: E731
        assert [get(yes).priority, get(no).priority, get(one).priority] == [9, -9, 1]
        assert get(None).priority == 3  # no instance: the default
        assert job_of(producer, producer.enqueue("scored")).priority == 0

    def test_process_rule_is_reevaluated_after_set_variables(self, producer: App) -> None:
        pi = producer.start_process_instance(
            {"level": "low"}, priority=from_variable("level", {"low": 1, "high": 10})
        )
        assert job_of(producer, producer.enqueue("x", process_instance_id=pi)).priority == 1
        revision = producer.set_variables(pi, {"level": "high"})
        assert revision == 1
        assert job_of(producer, producer.enqueue("x", process_instance_id=pi)).priority == 10
        assert producer.get_variables(pi) == {"level": "high"}
        assert producer.management.process_instance(pi)["priority"] is None

    def test_type_rule_sees_variables_set_in_the_same_commit(
        self, client: redis.Redis, namespace: str
    ) -> None:
        deployer(client, namespace)
        app = App.with_client(client, namespace=namespace)
        app.job("start")(noop)
        pi = app.start_process_instance({"tier": "silver"})
        app.enqueue("start", process_instance_id=pi)
        (job,) = app.store.acquire_jobs("w", 1, types=["start"]).jobs
        ctx = JobContext(job, app, "w")
        ctx.set_variable("tier", "gold")
        ctx.enqueue("tiered")
        app.store.commit(job, ctx.effects())
        (tiered,) = app.management.jobs()
        assert tiered.priority == 100

    def test_rule_on_a_job_definition_is_a_declaration(self) -> None:
        rule = from_variable("x", {"a": 1})
        assert isinstance(rule, FromVariable) and not callable(rule)


class TestSetVariables:
    def test_set_variables_merges_and_bumps_the_revision(self, producer: App) -> None:
        pi = producer.start_process_instance({"a": 1, "b": 2})
        producer.set_variables(pi, {"b": 3, "c": "x"})
        assert producer.get_variables(pi) == {"a": 1, "b": 3, "c": "x"}
        assert producer.store.read_process_instance(pi)[0] == 1

    def test_a_job_that_read_before_cannot_commit_over_it(self, producer: App) -> None:
        producer.job("t")(noop)
        pi = producer.start_process_instance({"a": 1})
        producer.enqueue("t", process_instance_id=pi)
        (job,) = producer.store.acquire_jobs("w", 1).jobs
        ctx = JobContext(job, producer, "w")
        ctx.set_variable("a", 2)
        producer.set_variables(pi, {"a": 5})
        with pytest.raises(OptimisticLockingError):
            producer.store.commit(job, ctx.effects())
        assert producer.get_variables(pi) == {"a": 5}

    def test_bad_input_writes_nothing(self, producer: App) -> None:
        pi = producer.start_process_instance({"a": 1})
        with pytest.raises(ProcessInstanceNotFoundError):
            producer.set_variables("p999999", {"a": 1})
        with pytest.raises(ValidationError):
            producer.set_variables(pi, {"a": object()})
        with pytest.raises(ValidationError):
            producer.set_variables(pi, {1: 2})  # type: ignore[dict-item]
        with pytest.raises(ValidationError):
            producer.set_variables(pi, [("a", 1)])  # type: ignore[arg-type]
        assert producer.get_variables(pi) == {"a": 1}
        assert producer.store.read_process_instance(pi)[0] == 0


# -- suspension ---------------------------------------------------------------------------------


class TestSuspension:
    def test_jobs_of_a_suspended_type_count_and_list_as_suspended(self, producer: App) -> None:
        ids = [producer.enqueue("s") for _ in range(3)]
        producer.enqueue("other")
        m = producer.management
        m.suspend_job_definition("s", include_jobs=False)
        counts = m.counts()
        assert (counts["ready"], counts["suspended"], counts["total"]) == (1, 3, 4)
        by_type = m.counts_by_type()
        assert (by_type["s"]["ready"], by_type["s"]["suspended"]) == (0, 3)
        assert [j.id for j in m.jobs(state="suspended")] == ids
        assert all(j.state is JobState.SUSPENDED for j in m.jobs(state="suspended"))
        assert [j.type for j in m.jobs(state="ready")] == ["other"]
        assert m.get_job(ids[0]).state is JobState.SUSPENDED  # type: ignore[union-attr]
        m.activate_job_definition("s", include_jobs=False)
        assert m.counts()["ready"] == 4

    def test_process_instance_suspension(self, producer: App) -> None:
        pi = producer.start_process_instance({})
        other = producer.start_process_instance({})
        first = producer.enqueue("t", process_instance_id=pi)
        keep = producer.enqueue("t", process_instance_id=other)
        m = producer.management
        assert m.suspend_process_instance(pi) == 1
        later = producer.enqueue("t", process_instance_id=pi)  # born suspended
        assert job_of(producer, later).state is JobState.SUSPENDED
        assert [j.id for j in producer.store.acquire_jobs("w", 10).jobs] == [keep]
        assert m.counts()["suspended"] == 2
        assert m.activate_process_instance(pi) == 2
        assert [j.id for j in producer.store.acquire_jobs("w", 10).jobs] == [first, later]
        with pytest.raises(ProcessInstanceNotFoundError):
            m.suspend_process_instance("p424242")


class TestUnknownTypes:
    def test_operator_actions_on_a_never_seen_type_are_refused(self, producer: App) -> None:
        m = producer.management
        for action in (
            lambda **kw: m.set_overriding_job_priority("typo", 5, **kw),
            lambda **kw: m.clear_overriding_job_priority("typo", **kw),
            lambda **kw: m.suspend_job_definition("typo", **kw),
            lambda **kw: m.activate_job_definition("typo", **kw),
        ):
            with pytest.raises(UnknownJobTypeError, match="typo"):
                action()
        assert m.job_definitions() == []
        m.suspend_job_definition("typo", force=True)
        assert [(i.type, i.suspended, i.deployed) for i in m.job_definitions()] == [
            ("typo", True, False)
        ]
        m.activate_job_definition("typo")  # known now

    def test_deployed_or_enqueued_types_are_known(
        self, client: redis.Redis, namespace: str, producer: App
    ) -> None:
        deployer(client, namespace)
        producer.management.set_overriding_job_priority("slow", 1)
        producer.enqueue("adhoc")
        producer.management.suspend_job_definition("adhoc")


# -- wake-ups -------------------------------------------------------------------------------------


class TestWakeMessages:
    def test_enqueue_publishes_type_and_best_priority(self, producer: App) -> None:
        pubsub = producer.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(producer.store.keys.wake_channel)
        pubsub.get_message(timeout=0.2)
        producer.enqueue_many(
            [{"type": "a", "priority": 1}, {"type": "a", "priority": 9}, {"type": "b"}]
        )
        message = None
        for _ in range(20):
            message = pubsub.get_message(timeout=0.1)
            if message:
                break
        assert message is not None
        assert sorted(parse(message["data"]) or []) == [
            ("a", priority_key(9)),
            ("b", priority_key(0)),
        ]
        pubsub.close()

    def test_priority_bound_of_the_wake_filter(self) -> None:
        top = WakeFilter(priority_max=PRIORITY_MAX)
        assert top.accepts("x", priority_key(PRIORITY_MAX))


# -- strict order among due jobs ------------------------------------------------------------------


def wait_until(store: Any, ms: int) -> None:
    import time

    while store.time_ms() <= ms:
        time.sleep(0.02)


class TestStrictDueOrder:
    @pytest.mark.parametrize("priority", [100, 1_000_000])
    def test_high_priority_due_after_a_due_backlog_is_in_the_first_acquisition(
        self, producer: App, priority: int
    ) -> None:
        from rexec.check import check

        store = producer.store
        now = store.time_ms()
        store.enqueue([NewJob("low", due_ms=now + 300, exclusive=False)] * 5000)
        (high,) = store.enqueue([NewJob("low", due_ms=now + 600, priority=priority)])
        (other,) = store.enqueue([NewJob("other", due_ms=now + 600, priority=priority - 1)])
        wait_until(store, now + 650)
        first = store.acquire_jobs("w", 10)
        assert [j.id for j in first.jobs[:2]] == [high, other]
        assert all(j.priority == 0 for j in first.jobs[2:]) and len(first.jobs) == 10
        assert check(store) == []

    def test_exclusive_job_due_behind_a_backlog_comes_with_its_instance(
        self, producer: App
    ) -> None:
        from rexec.check import check

        store = producer.store
        pi = producer.start_process_instance({})
        now = store.time_ms()
        store.enqueue([NewJob("low", due_ms=now + 200, exclusive=False)] * 2000)
        a, b = store.enqueue(
            [NewJob("x", due_ms=now + 400, priority=9, process_instance_id=pi)] * 2
        )
        wait_until(store, now + 450)
        first = store.acquire_jobs("w", 3)
        assert first.batches[0] and [j.id for j in first.batches[0]] == [a, b]
        assert check(store) == []

    def test_future_groups_of_higher_priority_do_not_hide_due_jobs(self, producer: App) -> None:
        from rexec.check import check

        store = producer.store
        now = store.time_ms()
        store.enqueue([NewJob("t", due_ms=now + 600_000, priority=p) for p in range(10, 50)])
        (due,) = store.enqueue([NewJob("t", due_ms=now + 200, priority=1)])
        store.enqueue([NewJob("t", due_ms=now + 200, priority=0)] * 500)
        wait_until(store, now + 250)
        assert store.acquire_jobs("w", 1).jobs[0].id == due
        counts = producer.management.counts()
        assert counts["scheduled"] == 40 and counts["locked"] == 1
        assert check(store) == []

    def test_a_rescheduled_job_is_found_in_order_after_it_falls_due(self, producer: App) -> None:
        store = producer.store
        (job_id,) = store.enqueue([NewJob("t", priority=50, retries=3)])
        job = store.acquire_jobs("w", 1).jobs[0]
        now = store.time_ms()
        store.fail(job, "again", retry_cycle=None)  # no wait: ready again at once
        store.enqueue([NewJob("t", due_ms=now + 100)] * 3000)
        wait_until(store, now + 150)
        assert store.acquire_jobs("w", 5).jobs[0].id == job_id


class TestWorkerWiring:
    def test_worker_acquires_its_apps_types_and_filters_wakeups(self, producer: App) -> None:
        from rexec.executor.wakeups import is_relevant
        from rexec.settings import WorkerSettings
        from rexec.worker import Worker

        producer.job("a")(noop)
        producer.job("b")(noop)
        worker = Worker(producer, WorkerSettings(app_path="m:app", priority_min=0))
        assert worker.acquirer.options.types == ("a", "b")
        narrowed = Worker(producer, WorkerSettings(app_path="m:app", types=("b",)))
        assert narrowed.acquirer.options.types == ("b",)
        message = {"type": "message", "data": f"a|{priority_key(3)}".encode()}
        assert is_relevant(message, worker.rt)
        assert not is_relevant(message, narrowed.rt)
        low = {"type": "message", "data": f"a|{priority_key(-1)}"}
        assert not is_relevant(low, worker.rt)
        assert is_relevant({"type": "message", "data": b"1"}, narrowed.rt)
        assert not is_relevant({"type": "subscribe", "data": 1}, worker.rt)
        with pytest.raises(ConfigurationError):
            Worker(producer, WorkerSettings(app_path="m:app", types=("zz",)))

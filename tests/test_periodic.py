"""Periodic jobs: schedules in Redis, one job per tick however many tickers race, missed
ticks skipped or caught up, bad input refused with nothing written.

Contract tests run on fakeredis and a real redis-server (the ``client`` fixture) with an
injected clock: the schedules start a day in the past, so a test steps through ticks by
passing ``now_ms`` and never waits. The race and real-worker tests use the real server.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from rexec import App, JobState, JobType, ValidationError
from rexec import periodic as p
from rexec.app import connect
from rexec.errors import ScriptError
from rexec.job import Job
from rexec.store import Store
from tests.harness import Cluster

MINUTE = 60_000


def noop(ctx: Any, payload: Any) -> None:
    pass


def day_ago(store: Store) -> int:
    """A whole hour about a day before Redis's now: every tick after it is in the past."""
    return (store.time_ms() - 86_400_000) // 3_600_000 * 3_600_000


def jobs_of(store: Store, job_type: str) -> list[Job]:
    ids = [i for chunk in store.scan_job_ids(job_type) for i in chunk]
    return sorted(store.get_jobs(ids), key=lambda j: j.due_ms)


def only(round_: p.TickRound) -> p.TickResult:
    assert len(round_.results) == 1, round_
    return round_.results[0]


@pytest.fixture
def base(app: App) -> int:
    return day_ago(app.store)


def deployed(app: App, base: int, *args: Any, **kwargs: Any) -> p.PeriodicInfo:
    app.periodic(*args, **kwargs)
    app.deploy_periodic(now_ms=base)
    name = kwargs.get("name", args[1])
    return next(s for s in p.schedules(app.store) if s.name == name)


# -- pure functions --------------------------------------------------------------------------


class TestCron:
    def test_next_tick_is_strictly_after(self) -> None:
        t = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
        assert p.next_tick_ms("*/5 * * * *", "UTC", t) == t + 5 * MINUTE
        assert p.next_tick_ms("*/5 * * * *", "UTC", t + 1) == t + 5 * MINUTE
        assert p.next_tick_ms("*/5 * * * *", "UTC", t - 1) == t

    def test_seconds_field_first(self) -> None:
        t = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
        assert p.next_tick_ms("*/10 * * * * *", "UTC", t) == t + 10_000
        assert p.next_tick_ms("* * * * * *", "UTC", t + 500) == t + 1000

    def test_timezone_and_dst(self) -> None:
        berlin = ZoneInfo("Europe/Berlin")
        runs = p.next_runs("0 9 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), 2)
        assert [r.astimezone(berlin).hour for r in runs] == [9, 9]
        assert [r.astimezone(UTC).hour for r in runs] == [8, 7]  # CET, then CEST

    def test_decide_on_time_late_missed_and_catch_up(self) -> None:
        t = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
        cron = "*/5 * * * *"
        assert p.decide(cron, "UTC", t, t, catch_up=False, grace_ms=MINUTE) == (
            True, t + 5 * MINUTE, "created",
        )  # fmt: skip
        assert p.decide(cron, "UTC", t, t + 30_000, catch_up=False, grace_ms=MINUTE)[0]
        # late by more than the grace: skipped, on to the next tick after now
        assert p.decide(cron, "UTC", t, t + 2 * MINUTE, catch_up=False, grace_ms=MINUTE) == (
            False, t + 5 * MINUTE, "skipped",
        )  # fmt: skip
        # the following ticks came too: one job with catch_up, then the future
        assert p.decide(cron, "UTC", t, t + 61 * MINUTE, catch_up=True, grace_ms=MINUTE) == (
            True, t + 65 * MINUTE, "caught_up",
        )  # fmt: skip
        assert p.decide(cron, "UTC", t, t + 5 * MINUTE, catch_up=False, grace_ms=10 * MINUTE) == (
            False, t + 10 * MINUTE, "skipped",
        )  # fmt: skip


class TestBadInput:
    @pytest.mark.parametrize(
        ("cron", "words"),
        [
            ("61 * * * *", "Bad minute"),
            ("* * * *", "Wrong number of fields"),
            ("* * * * * * *", "Wrong number of fields"),
            ("every minute", "Wrong number of fields"),
            ("0 0 30 2 *", "Bad day-of-month"),
            ("*/0 * * * *", "invalid cron"),
            ("* * * | *", "not a cron expression"),
            ("", "not a cron expression"),
        ],
    )
    def test_invalid_cron_writes_nothing(self, app: App, cron: str, words: str) -> None:
        with pytest.raises(p.InvalidScheduleError, match=words) as info:
            app.periodic(cron, "report")
        assert "\n" not in str(info.value)
        assert app.schedules == {}
        app.deploy_periodic()
        assert not app.client.exists(app.store.keys.periodic, app.store.keys.periodic_due)

    @pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../../etc/passwd", "utc+2", None])
    def test_unknown_timezone(self, app: App, tz: Any) -> None:
        with pytest.raises(p.InvalidScheduleError, match="timezone"):
            app.periodic("* * * * *", "report", timezone=tz)
        assert app.schedules == {}

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(p.InvalidScheduleError, match="naive"):
            p.next_runs("* * * * *", after=datetime(2026, 1, 1))
        with pytest.raises(p.InvalidScheduleError, match="naive"):
            p.to_ms(datetime(2026, 1, 1), "now_ms")

    def test_naive_start_writes_nothing(self, app: App) -> None:
        app.periodic("* * * * *", "report")
        with pytest.raises(p.InvalidScheduleError, match="naive") as info:
            app.deploy_periodic(now_ms=datetime(2026, 1, 1))  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
        assert not app.client.exists(app.store.keys.periodic, app.store.keys.periodic_due)
        aware = datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
        app.deploy_periodic(now_ms=aware)  # type: ignore[arg-type]
        [info_] = p.schedules(app.store)
        assert info_.next_ms == int((aware + timedelta(minutes=1)).timestamp() * 1000)

    def test_other_bad_options(self, app: App) -> None:
        with pytest.raises(ValidationError, match="job type"):
            app.periodic("* * * * *", "bad|type")
        with pytest.raises(p.InvalidScheduleError, match="schedule name"):
            app.periodic("* * * * *", "report", name="a b")
        with pytest.raises(p.InvalidScheduleError, match="grace_ms"):
            app.periodic("* * * * *", "report", grace_ms=-1)
        with pytest.raises(p.InvalidScheduleError, match="catch_up"):
            app.periodic("* * * * *", "report", catch_up="yes")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="priority"):
            app.periodic("* * * * *", "report", priority=2**63)
        with pytest.raises(ValidationError, match=r"msgpack|encode|payload"):
            app.periodic("* * * * *", "report", payload=object())
        app.periodic("* * * * *", "report")
        with pytest.raises(p.InvalidScheduleError, match="exists"):
            app.periodic("*/2 * * * *", "report")
        assert list(app.schedules) == ["report"]

    def test_tick_script_refuses_bad_arguments(self, app: App, base: int) -> None:
        info = deployed(app, base, "*/5 * * * *", "report")
        k = app.store.keys
        due = info.next_ms
        for args in (
            [k.wake_channel, "report", info.fingerprint, due, due, "1", "created"],
            [k.wake_channel, "report", info.fingerprint, due, due + 1, "2", "created"],
            [k.wake_channel, "report", info.fingerprint, "x", due + 1, "1", "created"],
            [k.wake_channel, "report", info.fingerprint, due, due + 1, "1", "a|b"],
        ):
            with pytest.raises(ScriptError, match="BAD_ARGUMENT"):
                app.store._run("tick", args)
        assert jobs_of(app.store, "report") == []
        assert app.client.zscore(k.periodic_due, "report") == due


# -- the contract: fakeredis and a real Redis -------------------------------------------------


class TestTicks:
    def test_each_tick_creates_one_job_with_the_stored_definition(
        self, app: App, base: int
    ) -> None:
        app.job("report", retry_cycle="R5/PT1M", exclusive=False)(noop)
        app.deploy()
        info = deployed(app, base, "*/5 * * * *", "report", {"n": 1}, priority=7)
        first = base + 5 * MINUTE
        assert info.next_ms == first and info.type == "report" and info.priority == 7
        assert p.tick(app.store, first - 1).results == ()  # not due yet: nothing
        result = only(p.tick(app.store, first))
        assert (result.status, result.next_ms) == (p.CREATED, first + 5 * MINUTE)
        [job] = jobs_of(app.store, "report")
        assert job.id == result.job_id
        assert (job.due_ms, job.priority, job.retries, job.exclusive) == (first, 7, 5, False)
        assert job.payload == {"n": 1} and job.state == JobState.READY
        # the same tick again: already moved on
        assert p.tick(app.store, first + 1000).results == ()
        only(p.tick(app.store, first + 5 * MINUTE + 10))
        assert [j.due_ms for j in jobs_of(app.store, "report")] == [first, first + 5 * MINUTE]
        [info] = p.schedules(app.store)
        assert (info.last_tick_ms, info.last_outcome) == (first + 5 * MINUTE, "created")
        assert info.next_ms == first + 10 * MINUTE

    def test_a_stale_view_loses_the_compare_and_set(self, app: App, base: int) -> None:
        info = deployed(app, base, "*/5 * * * *", "report")
        k = app.store.keys
        due = info.next_ms
        assert due is not None
        args = [k.wake_channel, "report", info.fingerprint, due, due + 5 * MINUTE, "1", "created"]
        first = app.store._run("tick", args)
        second = app.store._run("tick", args)
        assert first[0] == p.CREATED and first[1]  # type: ignore[index]
        assert second == [p.LOST, b"", due + 5 * MINUTE]
        # a changed definition (another fingerprint) loses too, writing nothing
        stale = [k.wake_channel, "report", "0" * 12, due + 5 * MINUTE, due + 10 * MINUTE, "1", "x"]
        assert app.store._run("tick", stale)[0] == p.LOST  # type: ignore[index]
        assert len(jobs_of(app.store, "report")) == 1

    def test_a_tick_in_the_future_by_redis_time_is_not_fired(self, app: App) -> None:
        now = app.store.time_ms()
        info = deployed(app, now, "0 0 1 1 *", "report")
        assert info.next_ms is not None and info.next_ms > now
        result = only(p.tick(app.store, info.next_ms))  # a client clock far ahead
        assert result.status == p.NOT_DUE
        assert jobs_of(app.store, "report") == []

    def test_missed_ticks_are_skipped(self, app: App, base: int) -> None:
        deployed(app, base, "*/5 * * * *", "report")
        first = base + 5 * MINUTE
        # no node ran for an hour: no job, on to the first tick after now
        result = only(p.tick(app.store, first + 61 * MINUTE))
        assert (result.status, result.job_id, result.next_ms) == (
            p.SKIPPED, None, first + 65 * MINUTE,
        )  # fmt: skip
        assert jobs_of(app.store, "report") == []
        # late by more than the grace, though the following tick has not come
        result = only(p.tick(app.store, first + 65 * MINUTE + 2 * MINUTE))
        assert result.status == p.SKIPPED
        # within the grace: created
        result = only(p.tick(app.store, first + 70 * MINUTE + 30_000))
        assert result.status == p.CREATED
        assert [j.due_ms for j in jobs_of(app.store, "report")] == [first + 70 * MINUTE]
        [info] = p.schedules(app.store)
        assert info.last_outcome == "created"

    def test_catch_up_runs_once_then_moves_on(self, app: App, base: int) -> None:
        deployed(app, base, "*/5 * * * *", "report", catch_up=True)
        first = base + 5 * MINUTE
        result = only(p.tick(app.store, first + 61 * MINUTE))
        assert result.status == p.CREATED and result.next_ms == first + 65 * MINUTE
        [job] = jobs_of(app.store, "report")
        assert job.due_ms == first  # the first tick missed
        assert p.tick(app.store, first + 64 * MINUTE).results == ()
        [info] = p.schedules(app.store)
        assert info.last_outcome == "caught_up"

    def test_priority_rules_apply_as_for_enqueue(self, app: App, base: int) -> None:
        app.job("report", priority=lambda payload, variables: payload["p"])(noop)
        app.deploy()
        app.management.set_overriding_job_priority("other", 99, force=True)
        deployed(app, base, "*/5 * * * *", "report", {"p": 11})
        deployed(app, base, "*/5 * * * *", "other", name="other-5")
        only_run = p.tick(app.store, base + 5 * MINUTE)
        assert {r.status for r in only_run.results} == {p.CREATED}
        [report] = jobs_of(app.store, "report")
        [other] = jobs_of(app.store, "other")
        assert (report.priority, other.priority) == (11, 99)

    def test_a_python_rule_the_schedule_lacks_creates_no_job(self, app: App, base: int) -> None:
        owner = App.with_client(app.client, namespace=app.namespace)
        owner.job("report", priority=lambda payload, variables: 3)(noop)
        owner.deploy()
        deployed(app, base, "*/5 * * * *", "report")  # this app has no handler for it
        result = only(p.tick(app.store, base + 5 * MINUTE))
        assert result.status == p.RULE_UNAVAILABLE and result.job_id is None
        assert result.next_ms == base + 10 * MINUTE  # moved on, not stuck
        assert jobs_of(app.store, "report") == []
        [info] = p.schedules(app.store)
        assert info.last_outcome == "rule_unavailable"

    def test_a_created_job_wakes_idle_workers(self, app: App, base: int) -> None:
        pubsub = app.client.pubsub()
        pubsub.subscribe(app.store.keys.wake_channel)
        pubsub.get_message(timeout=1)
        deployed(app, base, "*/5 * * * *", "report")
        only(p.tick(app.store, base + 5 * MINUTE))
        message = pubsub.get_message(timeout=2)
        pubsub.close()
        assert message is not None and message["data"].startswith(b"report|")

    def test_an_unreadable_record_is_left_alone_and_logged_once(
        self, app: App, base: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        k = app.store.keys
        app.client.hset(k.periodic, "junk", b"not a record")
        app.client.zadd(k.periodic_due, {"junk": base})
        round_ = p.tick(app.store, base + 1)
        assert round_.results == () and [n for n, _ in round_.unreadable] == ["junk"]
        assert p.schedules(app.store) == []
        now = [base + 1]
        ticker = p.Ticker(app.store, lambda: now[0])
        with caplog.at_level(logging.WARNING, "rexec.periodic"):
            ticker.maybe_tick()
            assert ticker.next_poll_ms == base + 1 + p.MAX_POLL_WAIT_MS  # no spinning
            now[0] = ticker.next_poll_ms
            ticker.maybe_tick()
        assert caplog.text.count("junk") == 1


class TestDeploy:
    def test_redeploy_keeps_ticks_and_removes_what_the_app_dropped(
        self, app: App, base: int
    ) -> None:
        app.periodic("*/5 * * * *", "report")
        app.periodic("0 * * * *", "cleanup")
        assert app.deploy_periodic(now_ms=base) == {"report": "new", "cleanup": "new"}
        only(p.tick(app.store, base + 5 * MINUTE))
        # unchanged: keeps its next tick (not reset to the first after the new now)
        assert app.deploy_periodic(now_ms=base + 30 * MINUTE)["report"] == "unchanged"
        nxt = {s.name: s.next_ms for s in p.schedules(app.store)}
        assert nxt["report"] == base + 10 * MINUTE
        other = App.with_client(app.client, namespace=app.namespace)
        other.periodic("*/2 * * * *", "theirs")
        other.deploy_periodic(app_path="other:app", now_ms=base)
        again = App.with_client(app.client, namespace=app.namespace)
        again.periodic("*/10 * * * *", "report")  # changed, and cleanup dropped
        assert again.deploy_periodic(now_ms=base + 31 * MINUTE) == {
            "report": "changed",
            "cleanup": "removed",
        }
        infos = {s.name: s for s in p.schedules(app.store)}
        assert set(infos) == {"report", "theirs"}  # another app's schedule stays
        assert infos["report"].next_ms == base + 40 * MINUTE
        assert not app.client.hexists(app.store.keys.periodic_last, "cleanup")

    def test_worker_deploy_writes_schedules(self, app: App, base: int) -> None:
        app.job("report")(noop)
        app.periodic("*/5 * * * *", "report")
        assert app.deploy() == {"report": "new"}
        assert [s.name for s in p.schedules(app.store)] == ["report"]
        assert app.deploy(periodic=False) == {"report": "unchanged"}

    def test_unschedule(self, app: App, base: int) -> None:
        info = deployed(app, base, "*/5 * * * *", "report")
        assert app.unschedule("report") is True
        assert app.unschedule("report") is False
        assert app.schedules == {}
        assert p.tick(app.store, base + 5 * MINUTE).results == ()
        k = app.store.keys
        # a ticker that read it just before: loses the compare-and-set, writes nothing
        args = [k.wake_channel, "report", info.fingerprint, info.next_ms, base + 10 * MINUTE]
        assert app.store._run("tick", [*args, "1", "created"])[0] == p.LOST  # type: ignore[index]
        assert jobs_of(app.store, "report") == []
        assert not app.client.exists(k.periodic, k.periodic_due, k.periodic_last)

    def test_decorator_form_registers_the_handler(self, app: App) -> None:
        @app.periodic("0 3 * * *", "nightly", timezone="Europe/Berlin")
        def nightly(ctx: Any, payload: Any) -> None:
            pass

        assert isinstance(nightly, JobType) and nightly.type == "nightly"
        assert app.definitions["nightly"].handler is nightly.handler
        assert app.schedules["nightly"].timezone == "Europe/Berlin"

    def test_deploy_timezone_first_tick(self, app: App) -> None:
        start = int(datetime(2026, 1, 15, 12, tzinfo=UTC).timestamp() * 1000)
        info = deployed(app, start, "30 9 * * *", "report", timezone="Asia/Kolkata")
        expected = datetime(2026, 1, 16, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata"))
        assert info.next_ms == int(expected.timestamp() * 1000)
        d = info.to_dict()
        assert d["next_local"].startswith("2026-01-16T09:30:00+05:30")
        assert d["next_utc"].startswith("2026-01-16T04:00:00+00:00")


class TestTicker:
    def test_polls_at_the_next_tick_and_at_most_each_interval(self, app: App, base: int) -> None:
        now = [base]
        ticker = p.Ticker(app.store, lambda: now[0], max_wait_ms=1000)
        assert ticker.maybe_tick() == p.TickRound((), None)  # nothing deployed
        assert ticker.maybe_tick() is None  # not before the interval
        deployed(app, base, "* * * * * *", "tock")
        now[0] = base + 1000
        assert only(ticker.maybe_tick()).status == p.CREATED  # type: ignore[arg-type]
        assert ticker.next_poll_ms == base + 2000
        now[0] = base + 1500
        assert ticker.maybe_tick() is None
        now[0] = base + 2000
        assert only(ticker.maybe_tick()).status == p.CREATED  # type: ignore[arg-type]

    def test_a_failing_poll_waits_like_an_idle_one(self, app: App, base: int) -> None:
        class Broken:
            keys = app.store.keys

            @property
            def client(self) -> Any:
                raise redis.ConnectionError("away")

        ticker = p.Ticker(Broken(), lambda: base)  # type: ignore[arg-type]
        with pytest.raises(redis.ConnectionError):
            ticker.maybe_tick()
        assert ticker.maybe_tick() is None  # no hammering while Redis is away

    def test_a_tick_ahead_of_redis_time_is_retried_not_spun_on(self, app: App) -> None:
        now = app.store.time_ms()
        info = deployed(app, now, "0 0 1 1 *", "report")
        assert info.next_ms is not None
        ahead = info.next_ms + 10  # this process's clock runs far ahead of Redis's
        ticker = p.Ticker(app.store, lambda: ahead)
        assert only(ticker.maybe_tick()).status == p.NOT_DUE  # type: ignore[arg-type]
        assert ticker.next_poll_ms == ahead + p.MIN_POLL_GAP_MS


# -- races: several tickers on one real Redis, and real worker nodes ----------------------


def test_racing_tickers_create_exactly_one_job_per_tick(redis_url: str, namespace: str) -> None:
    """Eight tickers, each on its own connection, step through the same ticks together
    (a barrier lines them up on every tick): every tick gets one job, no more."""
    producer = App(redis_url, namespace=namespace)
    base = day_ago(producer.store)
    producer.periodic("* * * * * *", "tock", name="fast")
    producer.periodic("*/5 * * * * *", "tock", name="slow", catch_up=True)
    producer.deploy_periodic(now_ms=base)
    steps = [base + 1000 * i for i in range(1, 41)] + [base + 100_000]  # then a gap
    barrier = threading.Barrier(8)
    outcomes: list[p.TickResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def ticker() -> None:
        store = Store(connect(redis_url), namespace)
        try:
            for now in steps:
                barrier.wait(10)
                result = p.tick(store, now)
                with lock:
                    outcomes.extend(result.results)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            store.client.close()

    threads = [threading.Thread(target=ticker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    created = [r for r in outcomes if r.status == p.CREATED]
    jobs = jobs_of(producer.store, "tock")
    assert len(jobs) == len(created)
    fast = sorted(r.tick_ms for r in created if r.name == "fast")
    slow = sorted(r.tick_ms for r in created if r.name == "slow")
    assert fast == [base + 1000 * i for i in range(1, 41)]  # one each, none skipped
    # slow: every 5 s, then the missed ticks of the gap caught up once (from the first)
    assert slow == [base + 5000 * i for i in range(1, 9)] + [base + 45_000]
    assert sorted(j.due_ms for j in jobs) == sorted(fast + slow)
    skipped = [r for r in outcomes if r.status == p.SKIPPED]
    assert [r.name for r in skipped] == ["fast"]  # the gap: one skip, by one ticker
    producer.close()


@pytest.mark.slow
def test_worker_nodes_fire_a_schedule_no_node_registers(cluster: Cluster) -> None:
    """Two real nodes (four worker processes) of an app without the schedule or its type
    tick an every-second schedule: each tick makes exactly one job."""
    producer = App.with_client(cluster.app.client, namespace=cluster.namespace)
    producer.periodic("* * * * * *", "tock", {"from": "schedule"})
    nodes = [cluster.start_node(processes=2, concurrency=2) for _ in range(2)]
    cluster.wait_for_workers(4)
    producer.deploy_periodic(app_path="producer:app")
    store = producer.store
    cluster.wait_for(lambda: len(jobs_of(store, "tock")) >= 4, "four ticks fired")
    for node in nodes:
        cluster.stop_node(node)
    jobs = jobs_of(store, "tock")
    dues = [j.due_ms for j in jobs]
    assert len(dues) == len(set(dues)), "two jobs for one tick"
    assert all(d % 1000 == 0 for d in dues)
    assert all(j.payload == {"from": "schedule"} for j in jobs)
    [info] = p.schedules(store)
    assert info.last_tick_ms == dues[-1] and info.app == "producer:app"


# -- the command line ----------------------------------------------------------------------


def test_cli_lists_and_removes_schedules(
    monkeypatch: pytest.MonkeyPatch, namespace: str, tmp_path: Any
) -> None:
    import fakeredis
    import orjson
    from click.testing import CliRunner

    import rexec.app
    from rexec.cli import main

    server = fakeredis.FakeServer()
    monkeypatch.setattr(rexec.app, "connect", lambda url: fakeredis.FakeRedis(server=server))
    app = App("redis://fake", namespace=namespace)
    app.periodic("30 9 * * 1-5", "report", timezone="Europe/Berlin", catch_up=True)
    start = int(datetime(2026, 1, 15, 12, tzinfo=UTC).timestamp() * 1000)
    app.deploy_periodic(now_ms=start)
    runner = CliRunner(env={"COLUMNS": "200", "REXEC_REDIS_URL": None, "REXEC_NAMESPACE": None})
    target = ["--redis-url", "redis://fake", "--namespace", namespace]
    listed = runner.invoke(main, ["periodic", "list", *target])
    assert listed.exit_code == 0, listed.output
    assert "report" in listed.stdout and "2026-01-16 09:30:00+01:00" in listed.stdout
    assert "2026-01-16 08:30:00+00:00" in listed.stdout and "yes" in listed.stdout
    [row] = orjson.loads(runner.invoke(main, ["periodic", "list", "--json", *target]).stdout)
    assert row["next_utc"] == "2026-01-16T08:30:00+00:00" and row["catch_up"] is True
    removed = runner.invoke(main, ["periodic", "remove", "report", *target])
    assert removed.exit_code == 0 and "removed" in removed.stdout
    again = runner.invoke(main, ["periodic", "remove", "report", *target])
    assert again.exit_code == 1 and "no periodic schedule 'report'" in again.stderr
    bad = runner.invoke(main, ["periodic", "remove", "a b", *target])
    assert bad.exit_code == 1 and "schedule name" in bad.stderr
    app.close()


def test_cli_deploy_writes_and_removes_an_apps_schedules(
    monkeypatch: pytest.MonkeyPatch, namespace: str, tmp_path: Any
) -> None:
    import sys

    import fakeredis
    from click.testing import CliRunner

    import rexec.app
    from rexec.cli import main

    server = fakeredis.FakeServer()
    monkeypatch.setattr(rexec.app, "connect", lambda url: fakeredis.FakeRedis(server=server))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    name = f"periodicapp_{tmp_path.name.replace('-', '_')}"
    head = "import rexec\napp = rexec.App('redis://fake', namespace='w')\n"
    runner = CliRunner(env={"REXEC_REDIS_URL": None, "REXEC_NAMESPACE": None})
    target = ["--redis-url", "redis://fake", "--namespace", namespace]
    try:
        (tmp_path / f"{name}.py").write_text(
            head + "@app.periodic('*/5 * * * *', 'report')\ndef report(ctx, p): pass\n"
            "app.periodic('0 * * * *', 'report', name='hourly')\n"
        )
        out = runner.invoke(main, ["deploy", f"{name}:app", *target])
        assert out.exit_code == 0, out.output
        assert out.stdout.split("\n")[:3] == [
            "report: new", "periodic report: new", "periodic hourly: new",
        ]  # fmt: skip
        sys.modules.pop(name, None)
        (tmp_path / f"{name}.py").write_text(
            head + "@app.periodic('*/5 * * * *', 'report')\ndef report(ctx, p): pass\n"
        )
        out = runner.invoke(main, ["deploy", f"{name}:app", *target])
        assert "periodic report: unchanged" in out.stdout
        assert "periodic hourly: removed" in out.stdout
    finally:
        sys.modules.pop(name, None)
    with App("redis://fake", namespace=namespace) as app:
        [info] = app.periodic_schedules()
        assert (info.name, info.app) == ("report", f"{name}:app")


@pytest.mark.slow
def test_a_node_that_comes_back_skips_or_catches_up_missed_ticks(cluster: Cluster) -> None:
    """No node runs while ticks pass; then one starts. The schedule without catch_up
    creates no job for the missed ticks; the one with catch_up creates exactly one, for
    the first tick missed. Both then go on from now."""
    producer = App.with_client(cluster.app.client, namespace=cluster.namespace)
    producer.periodic("*/2 * * * * *", "tock", "skip", name="skipper")
    producer.periodic("*/2 * * * * *", "tock", "catch", name="catcher", catch_up=True)
    producer.deploy_periodic(app_path="producer:app")
    store = producer.store
    firsts = {s.name: s.next_ms for s in producer.periodic_schedules()}
    cluster.wait_for(lambda: store.time_ms() > max(firsts.values()) + 4500, "two ticks missed")
    assert jobs_of(store, "tock") == []
    started = store.time_ms()
    node = cluster.start_node(processes=2, concurrency=1)
    cluster.wait_for(
        lambda: {j.payload for j in jobs_of(store, "tock") if j.due_ms > started} >= {
            "skip", "catch",
        },
        "both schedules ticking again",
    )  # fmt: skip
    cluster.stop_node(node)
    missed: dict[str, list[int]] = {"skip": [], "catch": []}
    for job in jobs_of(store, "tock"):
        if job.due_ms <= started:
            missed[job.payload].append(job.due_ms)
    assert missed == {"skip": [], "catch": [firsts["catcher"]]}
    dues = [j.due_ms for j in jobs_of(store, "tock") if j.payload == "catch"]
    assert len(dues) == len(set(dues))

"""The delivery process from Camunda's job prioritization post, on rexec.

Each order is a process instance. Its first job forks two branches, ``reserve-stock``
and ``charge-card``, which join into ``schedule-delivery``; that job's priority comes
from a rule over the order's variables: VIP customers first. Then the delivery service
has an outage: the operator overrides ``schedule-delivery``'s priority to 0 (with
cascade) so its jobs get out of the way of other work, and clears it afterwards.

Run it (no Redis needed: it uses the embedded one):  python examples/delivery.py
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from rexec import App
from rexec.context import JobContext
from rexec.settings import WorkerSettings
from rexec.worker import Worker

app = App(namespace=f"delivery-example-{uuid.uuid4().hex[:6]}")
started = time.monotonic()
print_lock = threading.Lock()


def say(text: str) -> None:
    with print_lock:
        print(f"{time.monotonic() - started:6.2f}s  {text}", flush=True)


def customer(ctx: JobContext) -> str:
    variables = ctx.variables
    return f"{variables['customer']}{' (VIP)' if variables['vip'] else ''}"


@app.job("order-placed")
def order_placed(ctx: JobContext, payload: Any) -> None:
    say(f"order of {customer(ctx)}: reserve stock and charge the card in parallel")
    ctx.fork([{"type": "reserve-stock"}, {"type": "charge-card"}], join="schedule-delivery")


@app.job("reserve-stock")
def reserve_stock(ctx: JobContext, payload: Any) -> None:
    ctx.set_variable("reserved", True)


@app.job("charge-card")
def charge_card(ctx: JobContext, payload: Any) -> None:
    ctx.set_variable("charged", True)


@app.job(
    "schedule-delivery",
    priority=lambda payload, variables: 100 if variables.get("vip") else 10,
    retry_cycle="R3/PT1S",
)
def schedule_delivery(ctx: JobContext, payload: Any) -> None:
    variables = ctx.variables
    assert variables["reserved"] and variables["charged"]  # the join saw both branches
    say(f"  delivery scheduled for {customer(ctx)} (priority {ctx.job.priority})")
    ctx.end_process_instance()  # the order is done: nothing of it stays in Redis


@app.job("newsletter", priority=5, exclusive=False)
def newsletter(ctx: JobContext, payload: Any) -> None:
    say(f"  newsletter {payload} sent")


def place_orders(customers: list[tuple[str, bool]]) -> None:
    orders = app.start_process_instances(
        [{"customer": name, "vip": vip} for name, vip in customers]
    )
    app.enqueue_many([{"type": "order-placed", "process_instance_id": pi} for pi in orders])


def drain() -> None:
    while app.management.counts()["total"]:
        time.sleep(0.05)


def main() -> None:
    # One worker with one slot, in this process, so the order of execution is plain
    # to see. (`rexec worker examples.delivery:app` runs the same handlers as a node.)
    app.deploy()  # the job definitions into Redis, as `rexec worker` does at start
    worker = Worker(app, WorkerSettings("examples.delivery:app", concurrency=1, queue_size=0))
    thread = threading.Thread(target=worker.run, daemon=True)

    say("six orders arrive at once; two are from VIP customers")
    place_orders(
        [
            ("Ada", False),
            ("Bob", False),
            ("Cleo", True),
            ("Dan", False),
            ("Eve", True),
            ("Fay", False),
        ]
    )
    thread.start()
    drain()

    say("the delivery service slows down: override schedule-delivery's priority to 0")
    app.management.set_overriding_job_priority("schedule-delivery", 0, cascade=True)
    place_orders([("Gus", True), ("Hal", False)])
    app.enqueue_many([{"type": "newsletter", "payload": n} for n in (1, 2, 3)])
    drain()

    say("the service has recovered: clear the override")
    app.management.clear_overriding_job_priority("schedule-delivery")
    place_orders([("Ivy", True), ("Jon", False)])
    app.enqueue_many([{"type": "newsletter", "payload": n} for n in (4, 5)])
    drain()

    worker.stop()
    thread.join(10)
    for key in app.client.scan_iter(match=f"rexec:{{{app.namespace}}}:*"):
        app.client.delete(key)
    say("done")


if __name__ == "__main__":
    main()

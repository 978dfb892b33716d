"""The one source of truth for Redis key names.

Every key of a namespace carries the hash tag ``{namespace}``, so all of them live in
one Redis Cluster slot and every script can take them all in ``KEYS``. A partitioned
namespace (rexec/partitions.py) has one such set of keys per partition: partition 0 is
the namespace's own ``{namespace}``, each other partition has its own tag
``{namespace/p<k>.<salt>}``, so each partition is one slot and the scripts are
unchanged. The layout is documented in docs/internals/redis-schema.md;
tests/test_keys.py pins the exact strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# A partition's hash tag: its namespace, "/" (which no namespace contains, so a tag
# never names another namespace's keys) and the partition's name.
PARTITION_TAG_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}/p[0-9]{1,3}\.[0-9]{1,6}$")

# The order is the KEYS order every script receives (lua/includes/keys.lua names them).
SCRIPT_KEY_NAMES: tuple[str, ...] = (
    "jobs",
    "payloads",
    "errors",
    "ready",
    "scheduled",
    "locked",
    "suspended",
    "incidents",
    "pijobs",
    "pilocks",
    "types",
    "suspended_types",
    "overrides",
    "pis",
    "vars",
    "seq",
    "counters",
    "joins",
    "branches",
    "metrics",
    "workers",
    "heartbeats",
    "history",
    "parked",
    "type_jobs",
    "definitions",
    "pvals",
    "suspended_pis",
    "future",
    "instance_jobs",
    "periodic",
    "periodic_due",
    "periodic_last",
    "results",
    "result_expiry",
    "unique_keys",
    "job_keys",
    "settings",
)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one namespace (or of one partition of it: ``tag`` is then the
    partition's hash tag; '' is the namespace's own, partition 0)."""

    namespace: str
    tag: str = ""

    def __post_init__(self) -> None:
        from rexec.errors import ValidationError

        if not isinstance(self.namespace, str) or not NAMESPACE_RE.fullmatch(self.namespace):
            raise ValidationError(
                f"namespace must be 1-64 characters of A-Z a-z 0-9 _ . -, got {self.namespace!r}"
            )
        if self.tag and not (
            isinstance(self.tag, str)
            and PARTITION_TAG_RE.fullmatch(self.tag)
            and self.tag.startswith(self.namespace + "/")
        ):
            raise ValidationError(f"not a partition tag of {self.namespace!r}: {self.tag!r}")

    @property
    def prefix(self) -> str:
        return f"rexec:{{{self.tag or self.namespace}}}:"

    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def script_keys(self) -> list[str]:
        """All keys in the order lua/includes/keys.lua expects them."""
        return [self.prefix + name for name in SCRIPT_KEY_NAMES]

    # Named accessors for the keys Python reads directly.
    @property
    def jobs(self) -> str:
        return self.prefix + "jobs"

    @property
    def payloads(self) -> str:
        return self.prefix + "payloads"

    @property
    def errors(self) -> str:
        return self.prefix + "errors"

    @property
    def ready(self) -> str:
        return self.prefix + "ready"

    @property
    def scheduled(self) -> str:
        return self.prefix + "scheduled"

    @property
    def locked(self) -> str:
        return self.prefix + "locked"

    @property
    def suspended(self) -> str:
        return self.prefix + "suspended"

    @property
    def incidents(self) -> str:
        return self.prefix + "incidents"

    @property
    def pijobs(self) -> str:
        return self.prefix + "pijobs"

    @property
    def pilocks(self) -> str:
        return self.prefix + "pilocks"

    @property
    def types(self) -> str:
        return self.prefix + "types"

    @property
    def suspended_types(self) -> str:
        return self.prefix + "suspended_types"

    @property
    def overrides(self) -> str:
        return self.prefix + "overrides"

    @property
    def pis(self) -> str:
        return self.prefix + "pis"

    @property
    def vars(self) -> str:
        return self.prefix + "vars"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def counters(self) -> str:
        return self.prefix + "counters"

    @property
    def joins(self) -> str:
        return self.prefix + "joins"

    @property
    def branches(self) -> str:
        return self.prefix + "branches"

    @property
    def metrics(self) -> str:
        return self.prefix + "metrics"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    @property
    def heartbeats(self) -> str:
        return self.prefix + "heartbeats"

    @property
    def history(self) -> str:
        return self.prefix + "history"

    @property
    def parked(self) -> str:
        return self.prefix + "parked"

    @property
    def type_jobs(self) -> str:
        return self.prefix + "type_jobs"

    @property
    def definitions(self) -> str:
        return self.prefix + "definitions"

    @property
    def pvals(self) -> str:
        return self.prefix + "pvals"

    @property
    def suspended_pis(self) -> str:
        return self.prefix + "suspended_pis"

    @property
    def future(self) -> str:
        return self.prefix + "future"

    @property
    def instance_jobs(self) -> str:
        return self.prefix + "instance_jobs"

    @property
    def periodic(self) -> str:
        return self.prefix + "periodic"

    @property
    def periodic_due(self) -> str:
        return self.prefix + "periodic_due"

    @property
    def periodic_last(self) -> str:
        return self.prefix + "periodic_last"

    @property
    def results(self) -> str:
        return self.prefix + "results"

    @property
    def result_expiry(self) -> str:
        return self.prefix + "result_expiry"

    @property
    def unique_keys(self) -> str:
        return self.prefix + "unique_keys"

    @property
    def job_keys(self) -> str:
        return self.prefix + "job_keys"

    @property
    def settings(self) -> str:
        return self.prefix + "settings"

    @property
    def series(self) -> str:
        """Hash of the cockpit's time series (rexec/timeseries.py); no script uses it."""
        return self.prefix + "series"

    @property
    def partitions(self) -> str:
        """String: the namespace's partition layout (JSON, rexec/partitions.py), kept in
        partition 0 only; absent for a namespace of one partition. No script uses it."""
        return self.prefix + "partitions"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel (not a key) on which producers wake idle workers: one per
        namespace, shared by its partitions."""
        return f"rexec:{{{self.namespace}}}:wake"

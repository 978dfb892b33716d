"""The key schema: exact names, one hash tag per namespace, namespace validation.

The strings pinned here are a storage format: changing one strands the data of every
running deployment, so a change must be deliberate (and documented in
docs/internals/redis-schema.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from rexec.errors import RexecError, ValidationError
from rexec.keys import SCRIPT_KEY_NAMES, Keys

LUA_KEYS = Path(__file__).resolve().parent.parent / "lua" / "includes" / "keys.lua"

# Every named key of a namespace (property name -> exact key for namespace "shop").
SHOP_KEYS = {
    "jobs": "rexec:{shop}:jobs",
    "payloads": "rexec:{shop}:payloads",
    "errors": "rexec:{shop}:errors",
    "ready": "rexec:{shop}:ready",
    "scheduled": "rexec:{shop}:scheduled",
    "locked": "rexec:{shop}:locked",
    "suspended": "rexec:{shop}:suspended",
    "incidents": "rexec:{shop}:incidents",
    "pijobs": "rexec:{shop}:pijobs",
    "pilocks": "rexec:{shop}:pilocks",
    "types": "rexec:{shop}:types",
    "suspended_types": "rexec:{shop}:suspended_types",
    "overrides": "rexec:{shop}:overrides",
    "pis": "rexec:{shop}:pis",
    "vars": "rexec:{shop}:vars",
    "seq": "rexec:{shop}:seq",
    "counters": "rexec:{shop}:counters",
    "joins": "rexec:{shop}:joins",
    "branches": "rexec:{shop}:branches",
    "metrics": "rexec:{shop}:metrics",
    "workers": "rexec:{shop}:workers",
    "heartbeats": "rexec:{shop}:heartbeats",
    "history": "rexec:{shop}:history",
    "parked": "rexec:{shop}:parked",
    "type_jobs": "rexec:{shop}:type_jobs",
    "definitions": "rexec:{shop}:definitions",
    "pvals": "rexec:{shop}:pvals",
    "suspended_pis": "rexec:{shop}:suspended_pis",
    "future": "rexec:{shop}:future",
    "instance_jobs": "rexec:{shop}:instance_jobs",
    "periodic": "rexec:{shop}:periodic",
    "periodic_due": "rexec:{shop}:periodic_due",
    "periodic_last": "rexec:{shop}:periodic_last",
    "results": "rexec:{shop}:results",
    "result_expiry": "rexec:{shop}:result_expiry",
    "unique_keys": "rexec:{shop}:unique_keys",
    "job_keys": "rexec:{shop}:job_keys",
    "settings": "rexec:{shop}:settings",
}

SHOP_SCRIPT_KEYS = [
    "rexec:{shop}:jobs",
    "rexec:{shop}:payloads",
    "rexec:{shop}:errors",
    "rexec:{shop}:ready",
    "rexec:{shop}:scheduled",
    "rexec:{shop}:locked",
    "rexec:{shop}:suspended",
    "rexec:{shop}:incidents",
    "rexec:{shop}:pijobs",
    "rexec:{shop}:pilocks",
    "rexec:{shop}:types",
    "rexec:{shop}:suspended_types",
    "rexec:{shop}:overrides",
    "rexec:{shop}:pis",
    "rexec:{shop}:vars",
    "rexec:{shop}:seq",
    "rexec:{shop}:counters",
    "rexec:{shop}:joins",
    "rexec:{shop}:branches",
    "rexec:{shop}:metrics",
    "rexec:{shop}:workers",
    "rexec:{shop}:heartbeats",
    "rexec:{shop}:history",
    "rexec:{shop}:parked",
    "rexec:{shop}:type_jobs",
    "rexec:{shop}:definitions",
    "rexec:{shop}:pvals",
    "rexec:{shop}:suspended_pis",
    "rexec:{shop}:future",
    "rexec:{shop}:instance_jobs",
    "rexec:{shop}:periodic",
    "rexec:{shop}:periodic_due",
    "rexec:{shop}:periodic_last",
    "rexec:{shop}:results",
    "rexec:{shop}:result_expiry",
    "rexec:{shop}:unique_keys",
    "rexec:{shop}:job_keys",
    "rexec:{shop}:settings",
]

valid_namespaces = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-",
    min_size=1,
    max_size=64,
)


def all_names(keys: Keys) -> list[str]:
    """Every key and the wake-up channel of one namespace."""
    return [
        *(getattr(keys, name) for name in SHOP_KEYS),
        *keys.script_keys,
        keys.wake_channel,
    ]


# -- exact strings ---------------------------------------------------------------------


def test_prefix_carries_the_namespace_as_hash_tag() -> None:
    assert Keys("shop").prefix == "rexec:{shop}:"
    assert Keys("shop").key("anything") == "rexec:{shop}:anything"


@pytest.mark.parametrize(("name", "expected"), sorted(SHOP_KEYS.items()))
def test_named_key(name: str, expected: str) -> None:
    assert getattr(Keys("shop"), name) == expected


def test_wake_channel() -> None:
    assert Keys("shop").wake_channel == "rexec:{shop}:wake"


def test_script_keys_exact_order() -> None:
    assert Keys("shop").script_keys == SHOP_SCRIPT_KEYS


def test_script_key_names_match_named_accessors() -> None:
    keys = Keys("shop")
    assert [getattr(keys, name) for name in SCRIPT_KEY_NAMES] == keys.script_keys


def test_every_public_property_is_pinned() -> None:
    """A key added to Keys must be added to this file (and the schema document) too."""
    properties = {
        name
        for name, value in vars(Keys).items()
        if isinstance(value, property) and name not in ("prefix", "script_keys")
    }
    assert properties == {*SHOP_KEYS, "wake_channel", "series", "partitions"}


def test_series_key() -> None:
    """The cockpit's time series: plain commands only, so not among the script keys."""
    assert Keys("shop").series == "rexec:{shop}:series"
    assert "series" not in SCRIPT_KEY_NAMES


def test_partitions_key() -> None:
    """The layout of a partitioned namespace, in partition 0; no script uses it."""
    assert Keys("shop").partitions == "rexec:{shop}:partitions"
    assert "partitions" not in SCRIPT_KEY_NAMES


def test_partition_keys_carry_the_partition_tag() -> None:
    """Partition k of a partitioned namespace: the same names under its own tag, and
    the namespace's one wake-up channel."""
    keys = Keys("shop", "shop/p1.133")
    assert keys.jobs == "rexec:{shop/p1.133}:jobs"
    assert keys.script_keys == [k.replace("{shop}", "{shop/p1.133}") for k in SHOP_SCRIPT_KEYS]
    assert keys.wake_channel == "rexec:{shop}:wake"
    assert {key_slot(k.encode()) for k in keys.script_keys} == {key_slot(b"shop/p1.133")}
    assert Keys("shop", "") == Keys("shop")


@pytest.mark.parametrize("tag", ["other/p1.0", "shop", "shop/p1", "shop/x1.0", "shop/p1.0}", "{a}"])
def test_bad_partition_tags(tag: str) -> None:
    with pytest.raises(ValidationError, match="partition tag"):
        Keys("shop", tag)


def test_lua_keys_table_follows_script_key_order() -> None:
    """lua/includes/keys.lua names KEYS[i] exactly as SCRIPT_KEY_NAMES orders them."""
    text = LUA_KEYS.read_text(encoding="utf-8")
    pairs = re.findall(r"^\s*(\w+)\s*=\s*KEYS\[(\d+)\]", text, re.MULTILINE)
    assert [name for name, _ in pairs] == list(SCRIPT_KEY_NAMES)
    assert [int(index) for _, index in pairs] == list(range(1, len(SCRIPT_KEY_NAMES) + 1))


def test_keys_is_a_frozen_value() -> None:
    keys = Keys("shop")
    assert keys == Keys("shop")
    assert hash(keys) == hash(Keys("shop"))
    with pytest.raises(AttributeError):
        keys.namespace = "other"  # type: ignore[misc]


# -- one hash tag, one cluster slot --------------------------------------------------------


def test_all_keys_of_a_namespace_share_one_slot() -> None:
    names = all_names(Keys("shop"))
    slots = {key_slot(name.encode()) for name in names}
    assert slots == {key_slot(b"shop")}


@given(valid_namespaces)
def test_all_keys_share_the_hash_tag_slot(namespace: str) -> None:
    keys = Keys(namespace)
    expected = key_slot(namespace.encode())
    for name in all_names(keys):
        # Redis Cluster hashes only what is between the first "{" and the next "}".
        assert name.startswith("rexec:{" + namespace + "}:")
        assert key_slot(name.encode()) == expected


@given(valid_namespaces, valid_namespaces)
def test_namespaces_never_share_a_key(first: str, second: str) -> None:
    if first != second:
        assert not set(all_names(Keys(first))) & set(all_names(Keys(second)))


# -- namespace validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace", ["shop", "a", "A-b_c.9", "x" * 64, "prod.eu-1", "0", "..", "-"]
)
def test_good_namespaces(namespace: str) -> None:
    assert Keys(namespace).namespace == namespace


@pytest.mark.parametrize(
    "namespace",
    [
        "",
        "{shop}",
        "sh{op",
        "sh}op",
        "a:b",
        "a b",
        " shop",
        "shop ",
        "a|b",
        "a/b",
        "a*b",
        "x" * 65,
        "caf\u00e9",
        "\u0661",  # an Arabic-Indic digit: \d would take it, the schema must not
    ],
)
def test_bad_namespace_strings(namespace: str) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        Keys(namespace)


@pytest.mark.parametrize("namespace", [None, 5, b"shop", ["shop"], 1.5, True])
def test_non_str_namespaces(namespace: object) -> None:
    with pytest.raises(ValidationError):
        Keys(namespace)  # type: ignore[arg-type]


def test_namespace_with_trailing_newline() -> None:
    with pytest.raises(ValidationError):
        Keys("shop\n")


def test_validation_error_is_a_rexec_error_and_a_value_error() -> None:
    with pytest.raises(RexecError):
        Keys("")
    with pytest.raises(ValueError):
        Keys("")

"""Value encodings shared by Python and Lua: priority keys, job types, msgpack.

The priority key is what the Lua scripts sort by, so besides the Python side this
checks, on fakeredis's Lua, that the sort key built from it (lua/includes/job_key.lua)
orders jobs by priority descending, due ascending, id ascending, and that key_cmp and
key_in_range agree with Python's comparison of the keys.
"""

from __future__ import annotations

import datetime
import decimal
import math
import pickle
import re
from functools import cache
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rexec.codec import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_priority,
    check_type,
    pack,
    priority_from_key,
    priority_key,
    unpack,
)
from rexec.errors import (
    InvalidJobTypeError,
    InvalidPriorityError,
    PayloadError,
    ValidationError,
)
from rexec.scripts import flatten, lua_dir

int64 = st.integers(min_value=PRIORITY_MIN, max_value=PRIORITY_MAX)

# -- priority keys -------------------------------------------------------------------------


def test_priority_range_is_signed_64_bit() -> None:
    assert PRIORITY_MIN == -(2**63)
    assert PRIORITY_MAX == 2**63 - 1


@pytest.mark.parametrize(
    ("priority", "key"),
    [
        (PRIORITY_MAX, "0000000000000000"),
        (PRIORITY_MAX - 1, "0000000000000001"),
        (1, "7ffffffffffffffe"),
        (0, "7fffffffffffffff"),
        (-1, "8000000000000000"),
        (PRIORITY_MIN + 1, "fffffffffffffffe"),
        (PRIORITY_MIN, "ffffffffffffffff"),
    ],
)
def test_priority_key_exact(priority: int, key: str) -> None:
    assert priority_key(priority) == key
    assert priority_from_key(key) == priority


def test_lua_default_priority_key_is_priority_zero() -> None:
    """The scripts file a job without any priority under a literal key: priority 0."""
    literals: set[str] = set()
    for path in [*lua_dir().glob("*.lua"), *lua_dir().glob("includes/*.lua")]:
        literals |= set(re.findall(r"'([0-9a-f]{16})'", path.read_text(encoding="utf-8")))
    assert literals == {priority_key(0)}


@given(int64)
def test_priority_key_shape_and_round_trip(priority: int) -> None:
    key = priority_key(priority)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert priority_from_key(key) == priority
    assert check_priority(priority) == priority


@given(int64, int64)
def test_priority_key_reverses_priority_order(a: int, b: int) -> None:
    if a == b:
        assert priority_key(a) == priority_key(b)
        return
    low, high = sorted((a, b))
    # Higher priority, smaller key: ascending keys (Redis lex order) = descending priority.
    assert priority_key(low) > priority_key(high)
    assert priority_key(low).encode() > priority_key(high).encode()


@given(st.lists(int64, min_size=2, max_size=50))
def test_sorting_by_key_sorts_by_priority_descending(priorities: list[int]) -> None:
    assert sorted(priorities, key=priority_key) == sorted(priorities, reverse=True)


@pytest.mark.parametrize(
    "bad",
    [
        True,
        False,
        1.0,
        0.5,
        math.inf,
        "1",
        "",
        None,
        b"1",
        decimal.Decimal(1),
        [1],
        2**63,
        -(2**63) - 1,
        2**64,
        -(2**64),
    ],
)
def test_bad_priorities(bad: object) -> None:
    with pytest.raises(InvalidPriorityError):
        check_priority(bad)
    with pytest.raises(InvalidPriorityError):
        priority_key(bad)  # type: ignore[arg-type]


def test_invalid_priority_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        priority_key(2**63)


# -- the Lua side of the sort key -------------------------------------------------------------

JOB_KEY_PROBE = """-- @include job_key
local out = {}
for i = 1, #ARGV, 3 do
  out[#out + 1] = job_key(ARGV[i], {p = ARGV[i + 1], d = tonumber(ARGV[i + 2])})
end
return out
"""

KEY_CMP_PROBE = """-- @include key_cmp
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = key_cmp(ARGV[i], ARGV[i + 1]) end
return out
"""

KEY_IN_RANGE_PROBE = """-- @include key_in_range
local out = {}
for i = 1, #ARGV, 3 do
  out[#out + 1] = key_in_range(ARGV[i], ARGV[i + 1], ARGV[i + 2]) and 1 or 0
end
return out
"""

PROBES = {
    "probe_job_key": JOB_KEY_PROBE,
    "probe_key_cmp": KEY_CMP_PROBE,
    "probe_key_in_range": KEY_IN_RANGE_PROBE,
}


def _probe_reader(relative: str) -> str:
    name = relative.removesuffix(".lua")
    if name in PROBES:
        return PROBES[name]
    return (lua_dir() / relative).read_text(encoding="utf-8")


@cache
def _lua() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def run_probe(name: str, args: list[str | int]) -> list[Any]:
    reply: list[Any] = _lua().eval(flatten(name, read=_probe_reader), 0, *args)
    return reply


job_ids = st.integers(min_value=1, max_value=10**20 - 1)
dues = st.integers(min_value=0, max_value=2**48 - 1)


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(job_ids, st.sampled_from([PRIORITY_MIN, -1, 0, 1, PRIORITY_MAX]) | int64, dues),
        min_size=1,
        max_size=30,
        unique_by=lambda job: job[0],
    )
)
def test_lua_sort_key_orders_priority_due_id(jobs: list[tuple[int, int, int]]) -> None:
    args: list[str | int] = []
    for job_id, priority, due in jobs:
        args += [str(job_id), priority_key(priority), due]
    keys = [key.decode() for key in run_probe("probe_job_key", args)]
    for (job_id, priority, due), key in zip(jobs, keys, strict=True):
        assert key == f"{priority_key(priority)}{due:012x}{chr(96 + len(str(job_id)))}{job_id}"
        assert key[29:] == str(job_id)  # where next_candidates reads the id back
    by_key = [job for _, job in sorted(zip(keys, jobs, strict=True))]
    assert by_key == sorted(jobs, key=lambda job: (-job[1], job[2], job[0]))


def test_lua_sort_key_orders_ids_by_number_not_text() -> None:
    ids = ["9", "10", "99", "100", "12345678901234567890"]
    args: list[str | int] = []
    for job_id in ids:
        args += [job_id, priority_key(0), 0]
    keys = [key.decode() for key in run_probe("probe_job_key", args)]
    assert keys == sorted(keys)


@settings(max_examples=60)
@given(st.lists(st.tuples(int64, int64), min_size=1, max_size=30))
def test_lua_key_cmp_agrees_with_python(pairs: list[tuple[int, int]]) -> None:
    args: list[str | int] = []
    for a, b in pairs:
        args += [priority_key(a) + "0000000000001a1", priority_key(b) + "ffffffffffff" + "b99"]
    got = run_probe("probe_key_cmp", args)
    # key_cmp looks at the priority key only, whatever follows it.
    assert got == [(a < b) - (a > b) for a, b in pairs]


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(int64, st.none() | int64, st.none() | int64),
        min_size=1,
        max_size=30,
    )
)
def test_lua_key_in_range_bounds_by_priority(
    cases: list[tuple[int, int | None, int | None]],
) -> None:
    # As acquire.lua gets them: lo is the key of the highest priority allowed, hi that
    # of the lowest ('' = unbounded).
    args: list[str | int] = []
    for priority, high, low in cases:
        args += [
            priority_key(priority) + "000000000000a1",
            "" if high is None else priority_key(high),
            "" if low is None else priority_key(low),
        ]
    got = run_probe("probe_key_in_range", args)
    expected = [
        int((low is None or priority >= low) and (high is None or priority <= high))
        for priority, high, low in cases
    ]
    assert got == expected


# -- job types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "job_type", ["a", "send_email", "mail.send", "billing:invoice", "A-b_c.d:e-9", "x" * 200]
)
def test_good_job_types(job_type: str) -> None:
    assert check_type(job_type) == job_type


@pytest.mark.parametrize(
    "job_type",
    ["", "x" * 201, "a|b", "a b", " a", "a{b}", "a/b", "a~", "caf\u00e9", "a\tb", "a\nb"],
)
def test_bad_job_types(job_type: str) -> None:
    with pytest.raises(InvalidJobTypeError):
        check_type(job_type)


@pytest.mark.parametrize("job_type", [None, 1, b"a", ["a"], True])
def test_non_str_job_types(job_type: object) -> None:
    with pytest.raises(InvalidJobTypeError):
        check_type(job_type)


def test_job_type_with_trailing_newline() -> None:
    with pytest.raises(InvalidJobTypeError):
        check_type("a\n")


def test_invalid_job_type_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        check_type("")


# -- msgpack -------------------------------------------------------------------------------

msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text() | st.integers(-(2**63), 2**63 - 1), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(msgpack_values)
def test_pack_unpack_round_trip(value: Any) -> None:
    data = pack(value)
    assert isinstance(data, bytes)
    assert unpack(data) == value


def test_bytes_and_str_stay_apart() -> None:
    value = {"text": "h\u00e9", "raw": b"h\xc3\xa9", 1: [b"", ""]}
    back = unpack(pack(value))
    assert back == value
    assert isinstance(back["text"], str)
    assert isinstance(back["raw"], bytes)


def test_tuples_come_back_as_lists() -> None:
    assert unpack(pack({"t": (1, 2)})) == {"t": [1, 2]}


class Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [
        object(),
        Opaque(),
        {1, 2},
        frozenset(),
        2**64,
        -(2**63) - 1,
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        decimal.Decimal("1.5"),
        complex(1, 2),
        {"nested": [object()]},
    ],
)
def test_pack_unencodable(value: Any) -> None:
    with pytest.raises(PayloadError, match="payload cannot be encoded as msgpack"):
        pack(value)


def test_unreadable_packed_value_gives_payload_error_on_unpack() -> None:
    # msgpack encodes a tuple map key as an array, which cannot be a dict key again.
    data = pack({(1, 2): "tuple key"})
    with pytest.raises(PayloadError):
        unpack(data)


def test_pack_error_names_what() -> None:
    with pytest.raises(PayloadError, match=r"^variables cannot be encoded"):
        pack(object(), "variables")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x92\x01",  # an array of two with one item
        b"\x01\x02",  # two values, not one
        b"\xd9\x05abc",  # truncated str
        b"\xa2\xff\xfe",  # a str that is not UTF-8
        b"\x81\x80\x01",  # a map key that cannot be hashed
    ],
)
def test_unpack_garbage(data: bytes) -> None:
    with pytest.raises(PayloadError, match=r"^payload is not valid msgpack"):
        unpack(data)


def test_unpack_error_names_what() -> None:
    with pytest.raises(PayloadError, match=r"^variables is not valid msgpack"):
        unpack(b"\xc1", "variables")


def test_unpack_non_bytes() -> None:
    with pytest.raises(PayloadError):
        unpack(None)  # type: ignore[arg-type]


UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Tripwire:
    """Records its own unpickling: a stand-in for a malicious ``__reduce__``."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickling, ("tripwire",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unpack_never_unpickles(protocol: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpack used pickle")

    data = pickle.dumps({"job": Tripwire(), "n": 1}, protocol=protocol)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    UNPICKLED.clear()
    with pytest.raises(PayloadError):
        unpack(data)
    assert UNPICKLED == []


def test_payload_error_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        unpack(b"\xc1")

"""Value encodings shared by Python and the Lua scripts.

Priorities are signed 64-bit integers, which Lua 5.1 (doubles only) cannot hold, so
Python turns each into a *priority key*: 16 lowercase hex digits of ``2**63 - 1 - p``.
Ascending keys are descending priorities, and the scripts only compare and concatenate
them. Payloads and variables are msgpack; Lua passes their bytes through untouched.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgpack

from rexec.errors import InvalidJobTypeError, InvalidPriorityError, PayloadError

PRIORITY_MIN = -(2**63)
PRIORITY_MAX = 2**63 - 1
# Due times are kept as 12 hex digits (48 bits) in sort keys: a due time or delay of at
# most 2**46 ms (2,200 years) keeps now + delay far below that.
MAX_MS = 2**46
TYPE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def check_priority(priority: object) -> int:
    """Return ``priority`` if it is an int in the signed 64-bit range, else raise."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidPriorityError(f"priority must be an integer, got {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidPriorityError(
            f"priority must be within the signed 64-bit range [{PRIORITY_MIN}, {PRIORITY_MAX}],"
            f" got {priority}"
        )
    return priority


def priority_key(priority: int) -> str:
    """Order-preserving key of a priority: a higher priority gives a smaller key."""
    return format(PRIORITY_MAX - check_priority(priority), "016x")


def priority_from_key(key: str) -> int:
    return PRIORITY_MAX - int(key, 16)


@lru_cache(maxsize=4096)
def _valid_type(job_type: str) -> bool:
    return TYPE_RE.fullmatch(job_type) is not None


def check_type(job_type: object) -> str:
    if not isinstance(job_type, str) or not _valid_type(job_type):
        raise InvalidJobTypeError(
            "job type must be 1-200 characters of A-Z a-z 0-9 _ . : -, got " + repr(job_type)
        )
    return job_type


def check_ms(value: object, what: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        from rexec.errors import ValidationError

        raise ValidationError(f"{what} must be an integer number of milliseconds, got {value!r}")
    if not 0 <= value <= MAX_MS:
        from rexec.errors import ValidationError

        raise ValidationError(f"{what} must be between 0 and {MAX_MS} ms, got {value}")
    return value


def pack(value: Any, what: str = "payload") -> bytes:
    """msgpack-encode ``value`` or raise PayloadError saying why."""
    try:
        return msgpack.packb(value, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"{what} cannot be encoded as msgpack: {exc}") from exc


def unpack(data: bytes, what: str = "payload") -> Any:
    """Decode msgpack bytes (never pickle) or raise PayloadError saying why."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise PayloadError(f"{what} is not valid msgpack: {exc}") from exc


def variables_dict(value: Any, process_instance_id: str) -> dict[str, Any]:
    """Stored variables are a msgpack map; anything else is a corrupt instance."""
    if not isinstance(value, dict):
        raise PayloadError(
            f"variables of process instance {process_instance_id!r} are not a msgpack map"
        )
    return value

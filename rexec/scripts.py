"""Loads the Lua scripts shipped in ``lua/`` and flattens their includes.

A script names a helper with a line ``-- @include name``; the loader splices in
``lua/includes/name.lua`` (itself possibly including others) once, before first use,
and rejects include cycles and missing includes. Each script is then registered with
redis-py, which runs it by SHA and reloads it after a ``SCRIPT FLUSH`` or a restart.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import redis

from rexec.errors import ScriptError

INCLUDE_RE = re.compile(r"^--\s*@include\s+([A-Za-z0-9_]+)\s*$", re.MULTILINE)

SCRIPT_NAMES = (
    "enqueue",
    "acquire",
    "complete",
    "fail",
    "unlock",
    "extend_lock",
    "set_priority",
    "set_suspended",
    "set_retries",
    "delete_job",
    "start_process",
    "optimistic_read",
    "optimistic_lock",
    "commit",
    "retire_workers",
    "reclaim",
    "check_read",
    "check_repair",
    "check_pilocks",
    "check_joins",
    "deploy",
    "set_variables",
    "check_instances",
    "deploy_periodic",
    "tick",
    "check_keys",
    "check_results",
    "peek",
)


def lua_dir() -> Path:
    """Where the scripts are: ``rexec/lua`` in an installed wheel, ``lua/`` beside the
    package in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "acquire.lua").is_file():
            return candidate
    raise ScriptError(f"the rexec Lua scripts are missing (looked in {here / 'lua'})")


def _read(relative: str) -> str:
    path = lua_dir() / relative
    if not path.is_file():
        raise ScriptError(f"missing Lua file {relative!r} in {path.parent}")
    return path.read_text(encoding="utf-8")


def flatten(name: str, read: Any = None) -> str:
    """The source of script ``name`` with every include spliced in, each once, in
    dependency order. ``read`` maps a relative path to its text (for tests)."""
    reader = read or _read
    done: set[str] = set()
    parts: list[str] = []

    def visit(include: str, stack: tuple[str, ...]) -> None:
        if include in stack:
            cycle = " -> ".join((*stack[stack.index(include) :], include))
            raise ScriptError(f"include cycle in Lua scripts: {cycle}")
        if include in done:
            return
        text = reader(f"includes/{include}.lua")
        for dep in INCLUDE_RE.findall(text):
            visit(dep, (*stack, include))
        done.add(include)
        parts.append(INCLUDE_RE.sub("", text).strip())

    text = reader(f"{name}.lua")
    for dep in INCLUDE_RE.findall(text):
        visit(dep, ())
    parts.append(INCLUDE_RE.sub("", text).strip())
    return "\n\n".join(parts) + "\n"


@cache
def source(name: str) -> str:
    return flatten(name)


class Scripts:
    """The scripts registered on one client: ``scripts.acquire(keys, args)``."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script(source(name)) for name in SCRIPT_NAMES}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

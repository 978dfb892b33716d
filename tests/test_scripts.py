"""The Lua loader and the shape of the scripts themselves.

The loader is checked with an in-memory reader; the real scripts are checked
statically (headers, one helper per include, keys only from KEYS, only what Redis and
fakeredis's Lua both have), compiled on both backends, and found in a built wheel.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import fakeredis
import pytest
import redis

from rexec import scripts as scripts_module
from rexec.errors import ScriptError
from rexec.scripts import INCLUDE_RE, SCRIPT_NAMES, Scripts, flatten, lua_dir, source

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "lua"
INCLUDES = LUA / "includes"
SCRIPT_FILES = sorted(LUA.glob("*.lua"))
INCLUDE_FILES = sorted(INCLUDES.glob("*.lua"))

# Globals a rexec script may call: Lua 5.1's base library as Redis exposes it.
LUA_GLOBAL_FUNCTIONS = {
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "select",
    "setmetatable",
    "getmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "rawget",
    "rawset",
    "rawequal",
}
LUA_KEYWORDS = {"and", "or", "not", "if", "elseif", "while", "until", "return", "in", "function"}


def reader(files: dict[str, str]) -> Callable[[str], str]:
    """A stand-in for the file system: relative path -> text."""

    def read(relative: str) -> str:
        try:
            return files[relative]
        except KeyError:
            raise ScriptError(f"missing Lua file {relative!r}") from None

    return read


def strip_lua(text: str) -> str:
    """Lua source without comments and string literals (for the static checks)."""
    text = re.sub(r"--\[(=*)\[.*?\]\1\]", "", text, flags=re.DOTALL)
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"", "''", text)


def includes_of(text: str) -> list[str]:
    return INCLUDE_RE.findall(text)


def helper_definitions() -> dict[str, str]:
    """Function name -> include it is defined in."""
    found: dict[str, str] = {}
    for path in INCLUDE_FILES:
        for name in re.findall(r"^local function (\w+)\(", path.read_text(), re.MULTILINE):
            found[name] = path.stem
    return found


def transitive_includes(name: str, text: str) -> set[str]:
    seen: set[str] = set()
    todo = includes_of(text)
    while todo:
        include = todo.pop()
        if include not in seen:
            seen.add(include)
            todo += includes_of((INCLUDES / f"{include}.lua").read_text())
    return seen


# -- the loader --------------------------------------------------------------------------


def test_includes_are_spliced_once_in_dependency_order() -> None:
    files = {
        "main.lua": "-- @include b\n-- @include a\nreturn a() + b()\n",
        "includes/a.lua": "-- @include c\nlocal function a() return c() end\n",
        "includes/b.lua": "-- @include c\n-- @include a\nlocal function b() return a() end\n",
        "includes/c.lua": "local function c() return 1 end\n",
    }
    assert flatten("main", read=reader(files)) == (
        "local function c() return 1 end\n\n"
        "local function a() return c() end\n\n"
        "local function b() return a() end\n\n"
        "return a() + b()\n"
    )


def test_nested_includes() -> None:
    files = {
        "main.lua": "-- @include a\nreturn a()",
        "includes/a.lua": "-- @include b\nlocal function a() return b() end",
        "includes/b.lua": "-- @include c\nlocal function b() return c() end",
        "includes/c.lua": "-- @include d\nlocal function c() return d() end",
        "includes/d.lua": "local function d() return 4 end",
    }
    text = flatten("main", read=reader(files))
    order = [text.index(f"local function {name}(") for name in "dcba"]
    assert order == sorted(order)
    assert text.index("return a()") > order[-1]
    assert "@include" not in text


def test_include_directive_spacing_and_lookalikes() -> None:
    files = {
        "main.lua": "--   @include   a   \n-- not an include: see @include b\nreturn a()\n",
        "includes/a.lua": "local function a() return 1 end",
    }
    text = flatten("main", read=reader(files))
    assert text.startswith("local function a()")
    assert "-- not an include: see @include b" in text


def test_a_script_without_includes_is_unchanged() -> None:
    assert flatten("main", read=reader({"main.lua": "return 1\n"})) == "return 1\n"


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        (
            {
                "main.lua": "-- @include a\n",
                "includes/a.lua": "-- @include b\n",
                "includes/b.lua": "-- @include a\n",
            },
            "a -> b -> a",
        ),
        ({"main.lua": "-- @include a\n", "includes/a.lua": "-- @include a\n"}, "a -> a"),
        (
            {
                "main.lua": "-- @include x\n",
                "includes/x.lua": "-- @include b\n",
                "includes/b.lua": "-- @include c\n",
                "includes/c.lua": "-- @include d\n",
                "includes/d.lua": "-- @include b\n",
            },
            "b -> c -> d -> b",
        ),
    ],
)
def test_cycle_is_named(files: dict[str, str], cycle: str) -> None:
    with pytest.raises(ScriptError, match="cycle") as caught:
        flatten("main", read=reader(files))
    assert cycle in str(caught.value)


def test_missing_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "includes").mkdir()
    (tmp_path / "acquire.lua").write_text("-- @include present\n-- @include absent\n")
    (tmp_path / "includes" / "present.lua").write_text("local function present() end\n")
    monkeypatch.setattr(scripts_module, "lua_dir", lambda: tmp_path)
    with pytest.raises(ScriptError, match=r"includes/absent\.lua"):
        flatten("acquire")


def test_missing_nested_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "includes").mkdir()
    (tmp_path / "acquire.lua").write_text("-- @include a\n")
    (tmp_path / "includes" / "a.lua").write_text("-- @include gone\n")
    monkeypatch.setattr(scripts_module, "lua_dir", lambda: tmp_path)
    with pytest.raises(ScriptError, match="gone"):
        flatten("acquire")


def test_missing_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acquire.lua").write_text("return 1\n")
    monkeypatch.setattr(scripts_module, "lua_dir", lambda: tmp_path)
    with pytest.raises(ScriptError, match="nope"):
        flatten("nope")


def test_missing_lua_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_module = tmp_path / "rexec" / "scripts.py"
    fake_module.parent.mkdir()
    monkeypatch.setattr(scripts_module, "__file__", str(fake_module))
    with pytest.raises(ScriptError, match="missing"):
        scripts_module.lua_dir()


def test_script_may_include_a_helper_of_its_own_name() -> None:
    files = {"same.lua": "-- @include same\nreturn same()", "includes/same.lua": "local x = 1"}
    assert "local x = 1" in flatten("same", read=reader(files))


# -- the real scripts --------------------------------------------------------------------


def test_lua_dir_is_the_checkout() -> None:
    assert lua_dir() == LUA


def test_script_names_are_exactly_the_script_files() -> None:
    assert sorted(SCRIPT_NAMES) == [path.stem for path in SCRIPT_FILES]
    assert len(set(SCRIPT_NAMES)) == len(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_flattens(name: str) -> None:
    text = flatten(name)
    assert text == source(name)
    assert "@include" not in text
    # Each include appears once.
    definitions = re.findall(r"^local function (\w+)\(", text, re.MULTILINE)
    assert len(definitions) == len(set(definitions))
    assert text.count("local K = {") == 1


def test_every_include_is_used() -> None:
    used: set[str] = set()
    for path in SCRIPT_FILES:
        used |= transitive_includes(path.stem, path.read_text())
    assert used == {path.stem for path in INCLUDE_FILES}


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda path: path.name)
def test_script_header(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"--\[\[ (\w+): (.*?)\]\]\n", text, re.DOTALL)
    assert match, f"{path.name} must open with a --[[ {path.stem}: ... ]] header"
    assert match[1] == path.stem
    header = match[2]
    assert re.search(r"^KEYS:", header, re.MULTILINE), "the header names KEYS"
    assert re.search(r"^ARGV\[1\]", header, re.MULTILINE), "the header names ARGV[1] on"
    assert re.search(r"^Reply:", header, re.MULTILINE), "the header gives the reply"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda path: path.name)
def test_scripts_take_keys_first(path: Path) -> None:
    """Every script receives the namespace keys, so keys.lua is its first include."""
    includes = includes_of(path.read_text())
    assert includes[:1] == ["keys"]


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda path: path.name)
def test_script_reads_only_the_argv_its_header_names(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    header = text.split("]]", 1)[0]
    named = {int(n) for n in re.findall(r"\[(\d+)\]", header)}
    used = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", strip_lua(text))}
    assert named, "the header names at least one ARGV"
    assert used <= named, f"ARGV{sorted(used - named)} not in the header"


@pytest.mark.parametrize("path", INCLUDE_FILES, ids=lambda path: path.name)
def test_include_defines_one_top_level_function(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("--"), f"{path.name} opens with a comment saying what it does"
    top_level = [
        line
        for line in strip_lua(text).splitlines()
        if line.strip() and not line[0].isspace() and line.strip() not in ("end", "}")
    ]
    functions = [line for line in top_level if line.startswith("local function ")]
    # Besides its function, an include may declare a per-call memo table, nothing else:
    # no statement runs at the top level of an include.
    others = [line for line in top_level if not line.startswith("local function ")]
    if path.stem == "keys":
        assert functions == []
        assert others == ["local K = {"]
    else:
        assert len(functions) == 1, functions
        assert re.fullmatch(r"local function \w+\([\w, ]*\)", functions[0]), functions
        for line in others:
            assert re.fullmatch(r"local \w+ = \{\}", line), line


def test_helper_names_are_unique() -> None:
    names: list[str] = []
    for path in INCLUDE_FILES:
        names += re.findall(r"^local function (\w+)\(", path.read_text(), re.MULTILINE)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("path", [*SCRIPT_FILES, *INCLUDE_FILES], ids=lambda path: path.name)
def test_each_file_includes_the_helpers_it_calls(path: Path) -> None:
    """A helper's dependencies come from its own includes, not from whichever script
    happens to include them first."""
    text = path.read_text(encoding="utf-8")
    own = set(re.findall(r"^local function (\w+)\(", text, re.MULTILINE))
    available = transitive_includes(path.stem, text)
    for name, home in helper_definitions().items():
        if name in own:
            continue
        if re.search(rf"(?<![\w.:]){name}\s*\(", strip_lua(text)):
            assert home in available, f"{path.name} calls {name} without including {home}"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_flattened_script_defines_every_function_before_calling_it(name: str) -> None:
    """A call to anything else is a global access, which Redis refuses at run time."""
    text = strip_lua(flatten(name))
    defined: dict[str, int] = {}
    for match in re.finditer(r"\blocal function (\w+)\(|\blocal (\w+)\s*=\s*function\b", text):
        defined.setdefault(match[1] or match[2], match.start())
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_]\w*)\s*\(", text):
        called = match[1]
        if called in LUA_KEYWORDS or called in LUA_GLOBAL_FUNCTIONS:
            continue
        assert called in defined, f"{name}: {called}() is not defined"
        assert defined[called] < match.start(), f"{name}: {called}() is called before defined"


@pytest.mark.parametrize("path", [*SCRIPT_FILES, *INCLUDE_FILES], ids=lambda path: path.name)
def test_no_key_is_built_in_lua(path: Path) -> None:
    code = strip_lua(path.read_text(encoding="utf-8"))
    raw = path.read_text(encoding="utf-8")
    assert not re.search(r"KEYS\s*\[[^\]]*\]\s*\.\.|\.\.\s*KEYS\s*\[", code)
    assert not re.search(r"""['"]rexec:""", raw)
    if path.stem != "keys":
        assert "KEYS" not in code, "scripts name keys through the K table of keys.lua"


def test_redis_commands_take_the_key_or_the_channel() -> None:
    for path in [*SCRIPT_FILES, *INCLUDE_FILES]:
        raw = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
        for command, first in re.findall(r"redis\.p?call\('(\w+)'\s*(?:,\s*([^,)]+))?", raw):
            if command == "TIME":
                assert not first
            elif command == "PUBLISH":
                assert first.strip() == "ARGV[1]", f"{path.name} publishes to {first}"
            else:
                assert re.fullmatch(r"K\.\w+", first.strip()), f"{path.name}: {command} {first}"


@pytest.mark.parametrize("path", [*SCRIPT_FILES, *INCLUDE_FILES], ids=lambda path: path.name)
def test_only_portable_lua(path: Path) -> None:
    code = strip_lua(path.read_text(encoding="utf-8"))
    for forbidden in (r"\bcmsgpack\b", r"\bbit\s*\.", r"\bstruct\s*\.", r"\bcjson\b"):
        assert not re.search(forbidden, code), f"{path.name} uses {forbidden}"
    # No client-side time or randomness: "now" is the server's TIME (SPEC).
    assert not re.search(r"\bos\s*\.|\bmath\.random\b", code)


def test_every_key_field_used_is_defined() -> None:
    key_names = set(
        re.findall(r"^\s*(\w+)\s*=\s*KEYS\[", (INCLUDES / "keys.lua").read_text(), re.M)
    )
    for path in [*SCRIPT_FILES, *INCLUDE_FILES]:
        used = set(re.findall(r"\bK\.(\w+)", strip_lua(path.read_text(encoding="utf-8"))))
        assert used <= key_names, f"{path.name} uses {used - key_names}"


# -- compiled by Redis ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_compiles(client: redis.Redis, name: str) -> None:
    sha = client.script_load(flatten(name))
    assert client.script_exists(sha) == [True]


def test_scripts_register_every_script() -> None:
    scripts = Scripts(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    for name in SCRIPT_NAMES:
        assert getattr(scripts, name).script == source(name)
    with pytest.raises(AttributeError):
        _ = scripts.no_such_script


# -- shipped in the wheel ----------------------------------------------------------------

WHEEL_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "tests",
)


@pytest.mark.slow
def test_wheel_ships_the_lua_scripts(tmp_path: Path) -> None:
    # Build from a copy, so the build leaves nothing behind in the checkout.
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=WHEEL_IGNORE)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(project)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    [wheel] = out.glob("rexec-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "rexec/lua/acquire.lua" in names
        assert "rexec/lua/includes/keys.lua" in names
        assert "rexec/py.typed" in names
        for path in SCRIPT_FILES:
            assert archive.read(f"rexec/lua/{path.name}") == path.read_bytes()
        for path in INCLUDE_FILES:
            assert archive.read(f"rexec/lua/includes/{path.name}") == path.read_bytes()
        archive.extractall(tmp_path / "installed")

    # The installed layout finds its scripts (rexec/lua, not lua/ beside the package).
    probe = (
        "import rexec, rexec.scripts as s;"
        "print(rexec.__file__); print(s.lua_dir()); print(len(s.flatten('acquire')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "installed"), "PATH": ""},
        cwd=tmp_path,
    )
    module, found, length = result.stdout.split()
    assert Path(module).is_relative_to(tmp_path / "installed")
    assert Path(found) == tmp_path / "installed" / "rexec" / "lua"
    assert int(length) == len(flatten("acquire"))

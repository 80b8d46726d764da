"""The allow-list module (issue 21 items 3, 5, 6): both file forms, identities, globs, stale entries, errors.

Real files in a temporary directory, read by the one parser every user of an
allow-list goes through (aiocop.core.allowlist).
"""

import textwrap
from pathlib import Path

import pytest
from aiocop.core.allowlist import (
    AllowEntry,
    AllowList,
    AllowListError,
    load_allowlist,
    make_entry,
    parse_allowlist,
)

PYPROJECT = textwrap.dedent(
    """
    [project]
    name = "shop"

    [tool.aiocop]
    allow = [
      "alembic.*",
      { id = "myapp.config:load_settings", events = ["open"], reason = "read once at startup" },
    ]
    """
)

AIOCOP_TOML = textwrap.dedent(
    """
    allow = [{ id = "shop.views:CartView.total", events = ["socket.*", "time.sleep"] }]
    """
)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_pyproject_table_is_read_with_both_entry_forms(tmp_path):
    allow = load_allowlist(write(tmp_path, "pyproject.toml", PYPROJECT))
    source = str(tmp_path / "pyproject.toml")
    assert allow.entries == (
        AllowEntry("alembic.*", ("*",), None, f"{source}:allow[0]"),
        AllowEntry("myapp.config:load_settings", ("open",), "read once at startup", f"{source}:allow[1]"),
    )


def test_aiocop_toml_has_the_keys_at_top_level_and_wins_over_pyproject(tmp_path):
    write(tmp_path, "pyproject.toml", PYPROJECT)
    write(tmp_path, "aiocop.toml", AIOCOP_TOML)
    allow = load_allowlist(tmp_path)
    assert [entry.identity for entry in allow.entries] == ["shop.views:CartView.total"]
    assert allow.entries[0].events == ("socket.*", "time.sleep")
    assert allow.entries[0].source.startswith(str(tmp_path / "aiocop.toml"))


def test_a_directory_finds_pyproject_and_without_a_file_the_list_is_empty(tmp_path):
    assert len(load_allowlist(tmp_path)) == 0
    write(tmp_path, "pyproject.toml", "[project]\nname = 'x'\n")
    assert len(load_allowlist(tmp_path)) == 0, "a pyproject.toml without [tool.aiocop] allows nothing"
    write(tmp_path, "pyproject.toml", PYPROJECT)
    assert len(load_allowlist(tmp_path)) == 2


def test_other_keys_of_the_table_are_left_to_their_readers(tmp_path):
    text = '[tool.aiocop]\nfail-on = "high"\nallow = ["pkg.*"]\n'
    assert [entry.identity for entry in load_allowlist(write(tmp_path, "pyproject.toml", text)).entries] == ["pkg.*"]


def test_a_file_under_another_name_may_use_the_tool_table(tmp_path):
    path = write(tmp_path, "ci-allow.toml", PYPROJECT)
    assert len(load_allowlist(path)) == 2


def test_a_function_identity_matches_any_frame_of_the_stack_exactly():
    allow = parse_allowlist('allow = ["shop.views:CartView.total"]', "aiocop.toml")
    deeper = [("socket", "create_connection"), ("shop.views", "CartView.total"), ("asyncio.events", "Handle._run")]
    assert allow.match("socket.connect", deeper) is allow.entries[0]
    assert allow.match("socket.connect", [("shop.views", "CartView")]) is None
    assert allow.match("socket.connect", [("shop.views", "CartView.total_price")]) is None
    assert allow.match("socket.connect", [("shop.viewsx", "CartView.total")]) is None


def test_a_module_identity_matches_the_module_and_its_submodules_only():
    allow = parse_allowlist('allow = ["alembic.*"]', "aiocop.toml")
    assert allow.match("open", [("alembic", "f")]) is not None
    assert allow.match("open", [("alembic.runtime.migration", "MigrationContext.run")]) is not None
    assert allow.match("open", [("alembicx", "f")]) is None
    assert allow.match("open", [("myapp.alembic", "f")]) is None


def test_event_globs_choose_the_events_an_entry_allows():
    allow = parse_allowlist('allow = [{ id = "m:f", events = ["open", "socket.*"] }]', "aiocop.toml")
    frames = [("m", "f")]
    assert allow.match("open", frames) is not None
    assert allow.match("socket.connect", frames) is not None
    assert allow.match("socket", frames) is None, "socket.* needs the dot"
    assert allow.match("time.sleep", frames) is None
    assert allow.match("os.open", frames) is None, "globs match the whole name"


def test_the_first_entry_in_file_order_is_returned_and_every_matching_one_fires():
    text = 'allow = [{ id = "pkg.*", reason = "broad" }, { id = "pkg.db:connect", reason = "narrow" }, "other:f"]'
    allow = parse_allowlist(text, "aiocop.toml")
    broad, narrow, other = allow.entries
    assert allow.match("socket.connect", [("pkg.db", "connect")]) is broad
    assert allow.fired == {broad: 1, narrow: 1, other: 0}
    assert allow.stale() == [other]


def test_stale_lists_entries_that_allowed_nothing_in_file_order():
    allow = parse_allowlist('allow = ["a:f", "b.*", { id = "c:g", events = ["open"] }]', "aiocop.toml")
    assert allow.stale() == list(allow.entries)
    allow.match("time.sleep", [("c", "g")])  # c:g only allows open: still stale
    allow.match("open", [("b.sub", "h")])
    assert [entry.identity for entry in allow.stale()] == ["a:f", "c:g"]
    assert allow.fired[allow.entries[1]] == 1


def test_an_empty_list_matches_nothing():
    assert AllowList().match("open", [("m", "f")]) is None
    assert AllowList().stale() == []


@pytest.mark.parametrize(
    "identity",
    ["m:f", "pkg.mod:Class.method", "m:outer.<locals>.inner", "m:<lambda>", "__main__:main", "pkg.*", "a.b.c.*"],
)
def test_valid_identities(identity):
    assert make_entry(identity).identity == identity


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('"shop/views.py:12"', "is not an identity"),
        ('"shop.views"', "is not an identity"),  # a module needs .*
        ('"*"', "is not an identity"),
        ('"pkg.*.sub"', "is not an identity"),
        ('"m:"', "is not an identity"),
        ("3", "a string identity or a table"),
        ('{ events = ["open"] }', "has no id"),
        ('{ id = "m:f", event = ["open"] }', "unknown key 'event'"),
        ('{ id = "m:f", events = "open" }', "events must be a list"),
        ('{ id = "m:f", events = [] }', "events is empty"),
        ('{ id = "m:f", events = [""] }', "non-empty strings"),
        ('{ id = "m:f", reason = 1 }', "reason must be a string"),
    ],
)
def test_a_bad_entry_is_one_line_naming_the_file_the_entry_and_the_problem(tmp_path, entry, problem):
    path = write(tmp_path, "pyproject.toml", f'[tool.aiocop]\nallow = ["ok.*", {entry}]\n')
    with pytest.raises(AllowListError) as raised:
        load_allowlist(tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:allow[1]: ")
    assert problem in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[tool.aiocop\nallow = []\n", "not valid TOML"),
        ('[tool]\naiocop = "x"\n', "tool.aiocop must be a table"),
        ('[tool.aiocop]\nallow = "pkg.*"\n', "allow must be a list"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, text, problem):
    path = write(tmp_path, "pyproject.toml", text)
    with pytest.raises(AllowListError) as raised:
        load_allowlist(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert problem in message


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(AllowListError, match=r"nowhere\.toml: cannot read the allow-list"):
        load_allowlist(tmp_path / "nowhere.toml")


def test_allow_list_error_is_a_value_error():
    assert issubclass(AllowListError, ValueError)

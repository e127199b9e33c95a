"""The client's model of the server's view (View), the state file, and disk scans.

These are the pure parts behind "nothing lost": every change goes through View.apply,
every repair through View.diff, so their semantics are pinned here exactly.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import stat
from dataclasses import replace as dataclass_replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import replay as server_replay
from hypothesis import given, settings
from hypothesis import strategies as st
from support import previous_state_text

ROOT = "/w"


def C(
    cliente: ModuleType,
    kind: str,
    path: str,
    is_dir: bool = False,
    dest: str | None = None,
    origin: str = "live",
    synthetic: bool = False,
) -> Any:
    return cliente.Change(kind, path, is_dir, dest, origin, synthetic=synthetic)


def tree(entries: dict[str, Any]) -> dict[str, Any]:
    """A tree in the View's shape (what scan_tree returns) from {path: (is_dir, info)}, in any order."""
    top: dict[str, Any] = {}
    for path, (is_dir, info) in entries.items():
        node = top
        *parents, name = path[len(ROOT) + 1 :].split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        if is_dir:
            node.setdefault(name, {})
        else:
            node[name] = info
    return top


def flatten(top: dict[str, Any], prefix: str = ROOT + "/") -> dict[str, Any]:
    """{path: (is_dir, info)} of a tree in the View's shape."""
    out: dict[str, Any] = {}
    for name, node in top.items():
        if isinstance(node, dict):
            out[prefix + name] = (True, None)
            out.update(flatten(node, prefix + name + "/"))
        else:
            out[prefix + name] = (False, node)
    return out


def paths(view: Any) -> dict[str, bool]:
    return {path: entry[0] for path, entry in flatten(view.top).items()}


def test_created_then_duplicate_is_dropped(cliente: ModuleType) -> None:
    """watchdog's walk of a directory moved in makes up "created" events (is_synthetic) for what it finds there,
    which the kernel may also report: the second one says nothing new."""
    view = cliente.View(ROOT)
    assert view.apply(C(cliente, "created", "/w/a.txt")) == [C(cliente, "created", "/w/a.txt")]
    assert view.apply(C(cliente, "created", "/w/a.txt", synthetic=True)) == []
    assert paths(view) == {"/w/a.txt": False}


def test_a_file_the_kernel_says_was_created_again_was_replaced(cliente: ModuleType) -> None:
    """A rename from outside the tree over a known file (mktemp + mv) reaches us as "created": its content is new."""
    view = cliente.View(ROOT)
    view.apply(C(cliente, "created", "/w/a.txt"))
    assert view.apply(C(cliente, "created", "/w/a.txt")) == [C(cliente, "modified", "/w/a.txt")]
    assert view.apply(C(cliente, "created", "/w/d", True)) == [C(cliente, "created", "/w/d", True)]
    assert view.apply(C(cliente, "created", "/w/d", True)) == []
    assert paths(view) == {"/w/a.txt": False, "/w/d": True}


def test_missing_parents_are_reported_first(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    out = view.apply(C(cliente, "created", "/w/a/b/f"))
    assert out == [
        C(cliente, "created", "/w/a", True, origin="rescan"),
        C(cliente, "created", "/w/a/b", True, origin="rescan"),
        C(cliente, "created", "/w/a/b/f"),
    ]
    assert view.suspect is True
    assert paths(view) == {"/w/a": True, "/w/a/b": True, "/w/a/b/f": False}


def test_modified_of_unknown_file_becomes_created(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    assert view.apply(C(cliente, "modified", "/w/x")) == [C(cliente, "created", "/w/x")]
    assert view.apply(C(cliente, "modified", "/w/x")) == [C(cliente, "modified", "/w/x")]


def test_modified_directory_is_never_sent(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    view.apply(C(cliente, "created", "/w/d", True))
    assert view.apply(C(cliente, "modified", "/w/d", True)) == []
    assert view.apply(C(cliente, "modified", "/w/d", False)) == []


def test_delete_unknown_is_dropped_and_delete_takes_subtree(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    assert view.apply(C(cliente, "deleted", "/w/nothing")) == []
    view.apply(C(cliente, "created", "/w/d", True))
    view.apply(C(cliente, "created", "/w/d/f"))
    # the event's is_dir is corrected from the view (watchdog may not know any more)
    assert view.apply(C(cliente, "deleted", "/w/d", False)) == [C(cliente, "deleted", "/w/d", True)]
    assert paths(view) == {}


def test_move_carries_subtree_and_replaces_destination(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    for change in [
        C(cliente, "created", "/w/d", True),
        C(cliente, "created", "/w/d/f"),
        C(cliente, "created", "/w/e", True),
        C(cliente, "created", "/w/e/old"),
    ]:
        view.apply(change)
    out = view.apply(C(cliente, "moved", "/w/d", True, "/w/e"))
    assert out == [dataclass_replace(C(cliente, "moved", "/w/d", True, "/w/e"), replaced="dir")]  # what was there
    assert paths(view) == {"/w/e": True, "/w/e/f": False}


def test_move_of_unknown_source_is_a_creation(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    assert view.apply(C(cliente, "moved", "/w/ghost", False, "/w/real")) == [C(cliente, "created", "/w/real")]
    assert view.suspect is True


def test_move_out_of_the_tree_is_a_deletion(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    view.apply(C(cliente, "created", "/w/f"))
    assert view.apply(C(cliente, "moved", "/w/f", False, "/elsewhere/f")) == [C(cliente, "deleted", "/w/f")]


def test_paths_outside_the_root_are_ignored(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    assert view.apply(C(cliente, "created", "/wx/f")) == []
    assert view.apply(C(cliente, "created", "/other")) == []


def test_root_deleted_then_recreated(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    view.apply(C(cliente, "created", "/w/f"))
    assert view.apply(C(cliente, "deleted", "/w", True)) == [C(cliente, "deleted", "/w", True)]
    assert view.root_exists is False and paths(view) == {}
    assert view.apply(C(cliente, "deleted", "/w", True)) == []
    assert view.apply(C(cliente, "created", "/w", True, origin="rescan")) == [
        C(cliente, "created", "/w", True, origin="rescan")
    ]
    assert view.root_exists is True


def test_type_change_is_deleted_then_created(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    view.apply(C(cliente, "created", "/w/x"))
    assert view.apply(C(cliente, "created", "/w/x", True)) == [
        C(cliente, "deleted", "/w/x", False),
        C(cliente, "created", "/w/x", True),
    ]


def info(cliente: ModuleType, content: int, attrs: int | None = 0, kind: str = "file") -> int:
    """A FileInfo as a scan makes it: ``content`` the mtime-and-size fingerprint, ``attrs`` of mode, uid, gid."""
    packed: int = cliente.pack_info(kind, content, attrs)
    return packed


def test_diff_reports_topmost_deletion_parents_first_and_modifications(cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    view.load_tree(
        tree(
            {
                "/w/gone/a": (False, info(cliente, 1, 1)),
                "/w/gone": (True, None),
                "/w/gone/sub": (True, None),
                "/w/gone/sub/b": (False, info(cliente, 1, 1)),
                "/w/gone-not": (False, info(cliente, 5, 5)),
                "/w/same": (False, info(cliente, 2, 2)),
                "/w/changed": (False, info(cliente, 3, 3)),
                "/w/chmod": (False, info(cliente, 6, 6)),
                "/w/migrated": (False, info(cliente, 7, None)),  # from a format 4 state file: attributes unknown
                "/w/unknown": (False, None),
            }
        )
    )
    disk = {
        "/w/gone-not": (False, info(cliente, 5, 5)),
        "/w/same": (False, info(cliente, 2, 2)),
        "/w/changed": (False, info(cliente, 4, 3)),
        "/w/chmod": (False, info(cliente, 6, 7)),
        "/w/migrated": (False, info(cliente, 7, 1, "symlink")),
        "/w/unknown": (False, info(cliente, 9, 9)),
        "/w/new": (True, None),
        "/w/new/deep": (True, None),
        "/w/new/deep/f": (False, info(cliente, 1, 1)),
    }
    assert view.diff(tree(disk), "startup", report_modified=True) == [
        C(cliente, "deleted", "/w/gone", True, origin="startup"),
        C(cliente, "modified", "/w/changed", origin="startup"),
        dataclass_replace(C(cliente, "modified", "/w/chmod", origin="startup"), attrib=True),
        C(cliente, "created", "/w/new", True, origin="startup"),
        C(cliente, "created", "/w/new/deep", True, origin="startup"),
        C(cliente, "created", "/w/new/deep/f", origin="startup"),
    ]
    assert view.diff(tree(disk), "rescan") == [
        C(cliente, "deleted", "/w/gone", True, origin="rescan"),
        C(cliente, "created", "/w/new", True, origin="rescan"),
        C(cliente, "created", "/w/new/deep", True, origin="rescan"),
        C(cliente, "created", "/w/new/deep/f", origin="rescan"),
    ]


# A random sequence of operations on a small name space: replaying what View.apply returns
# (the way a server's reader would) must always give exactly the view's own tree.
NAMES = ["a", "b", "c"]
rel_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
operations = st.lists(
    st.tuples(st.sampled_from(["created", "modified", "deleted", "moved"]), rel_paths, st.booleans(), rel_paths),
    max_size=40,
)


def replay(events: list[Any], start: set[str] | None = None) -> set[str]:
    tree = set(start or ())
    for ev in events:
        under = ev.path + "/"
        if ev.kind == "created":
            tree.add(ev.path)
        elif ev.kind == "deleted":
            tree = {p for p in tree if p != ev.path and not p.startswith(under)}
        elif ev.kind == "moved":
            moved = {p for p in tree if p == ev.path or p.startswith(under)}
            dest_under = ev.dest_path + "/"
            tree = {p for p in tree - moved if p != ev.dest_path and not p.startswith(dest_under)}
            tree |= {ev.dest_path + p[len(ev.path) :] for p in moved}
    return tree


@settings(max_examples=300, deadline=None, database=None)
@given(operations)
def test_replaying_what_apply_returns_gives_the_view(cliente: ModuleType, ops: list[Any]) -> None:
    view = cliente.View(ROOT)
    sent: list[Any] = []
    for kind, rel, is_dir, dest in ops:
        if kind == "moved" and (dest == rel or dest.startswith(rel + "/")):
            continue  # a directory cannot be moved into itself
        sent += view.apply(C(cliente, kind, f"{ROOT}/{rel}", is_dir, f"{ROOT}/{dest}" if kind == "moved" else None))
    assert replay(sent) == set(paths(view))


@settings(max_examples=200, deadline=None, database=None)
@given(operations, operations)
def test_diff_then_apply_makes_the_view_equal_the_disk(
    cliente: ModuleType, before: list[Any], after: list[Any]
) -> None:
    def build(ops: list[Any]) -> Any:
        view = cliente.View(ROOT)
        for kind, rel, is_dir, _ in ops:
            if kind in ("created", "deleted"):
                view.apply(C(cliente, kind, f"{ROOT}/{rel}", is_dir))
        return view

    view, disk_view = build(before), build(after)
    server_tree = set(paths(view))
    disk = flatten(disk_view.top)
    sent: list[Any] = []
    for change in view.diff(disk_view.top, "rescan"):
        sent += view.apply(change)
    assert paths(view) == {p: e[0] for p, e in disk.items()}
    assert replay(sent, server_tree) == set(disk)


def test_state_round_trip_keeps_names_that_are_not_utf8(cliente: ModuleType) -> None:
    bad = os.fsdecode(b"bad_\xff")
    top = {"d": {"f": 12345, "empty": {}}, bad: None, "g": 2**98 + 7}
    state = cliente.SavedState(top, cliente.Identity.new())
    text = cliente.encode_state("/w", "ws://localhost:8765", state)
    assert text.isascii()
    assert cliente.decode_state(text, "/w", "ws://localhost:8765") == state
    assert cliente.decode_state(text, "/other", "ws://localhost:8765") is None
    assert cliente.decode_state(text, "/w", "ws://elsewhere:1") is None
    assert cliente.decode_state(text[:-5], "/w", "ws://localhost:8765") is None
    assert cliente.decode_state('{"version": 99}', "/w", "ws://localhost:8765") is None
    wrong = text.replace("12345", '"x"')
    assert wrong != text and cliente.decode_state(wrong, "/w", "ws://localhost:8765") is None


def test_state_keeps_the_identity_the_seq_and_what_the_server_holds(cliente: ModuleType) -> None:
    held = cliente.Held(2, (5 + 2**63 + 2**62) % 2**64, frozenset({5, 2**63 + 2**62}))
    state = cliente.SavedState({"a": 1, "d": {}}, cliente.Identity("ab" * 16, "cd" * 32), 41, held)
    text = cliente.encode_state("/w", "ws://localhost:8765", state)
    assert cliente.decode_state(text, "/w", "ws://localhost:8765") == state
    whole = dataclass_replace(state, held=cliente.Held(2, 77, None))  # the server holds every entry
    text = cliente.encode_state("/w", "ws://localhost:8765", whole)
    assert cliente.decode_state(text, "/w", "ws://localhost:8765") == whole
    # A secret or id out of format, a held list that does not add up: not a state file of ours.
    miscounted = dataclass_replace(state, held=cliente.Held(3, 0, held.hashes))
    for bad in [
        text.replace("cd" * 32, "CD" * 32),
        text.replace("ab" * 16, "ab" * 15),
        text.replace('"seq":41', '"seq":-1'),
        cliente.encode_state("/w", "ws://localhost:8765", miscounted),
    ]:
        assert cliente.decode_state(bad, "/w", "ws://localhost:8765") is None, bad


def test_state_of_the_previous_format_keeps_its_tree_without_an_identity(cliente: ModuleType) -> None:
    """Format 3 had no identity: its tree is kept, the server is taken to hold none of it (a new identity)."""
    top = {"d": {"f": 12345}, "g": None}
    saved = cliente.decode_state(previous_state_text("/w", "ws://localhost:8765", top), "/w", "ws://localhost:8765")
    assert saved == cliente.SavedState({"d": {"f": cliente.pack_info("file", 12345, None)}, "g": None})
    assert saved.identity is None and saved.seq == 0 and saved.held == cliente.Held(0, 0, frozenset())


# A state file of format 4 exactly as version 1.0's client wrote it: the identity, a fingerprint per file, and a
# pending event of protocol version 2 (no "type").
PENDING_V2 = (
    '{"seq":42,"event":"created","path":"/w/g","is_dir":false,"ts":"2026-11-29T10:00:00.000+00:00","origin":"live"}'
)
FORMAT_4 = json.dumps(
    {
        "version": 4,
        "root": "/w",
        "server": "ws://localhost:8765/",
        "client_id": "ab" * 16,
        "secret": "cd" * 32,
        "seq": 41,
        "count": 1,
        "sum": "0000000000000005",
        "held": None,
        "tree": {"d": {"f": -1234567}, "g": None},
        "pending": [[42, PENDING_V2]],
    },
    separators=(",", ":"),
)


def test_state_of_format_4_is_migrated_not_discarded(cliente: ModuleType) -> None:
    """Its tree keeps every path, each fingerprint as the content part (type, attributes unknown); the
    identity, the seq, what the server holds and the pending events (now with their type) stay."""
    saved = cliente.decode_state(FORMAT_4, "/w", "ws://localhost:8765/")
    assert saved is not None
    assert saved.identity == cliente.Identity("ab" * 16, "cd" * 32)
    assert (saved.seq, saved.held) == (41, cliente.Held(1, 5, None))
    migrated = saved.tree["d"]["f"]
    assert migrated == cliente.pack_info("file", -1234567, None) and saved.tree["g"] is None
    assert cliente.node_type(migrated) == "file"
    # The same file on disk: nothing to report (no false "modified" after an upgrade); its content changed: reported.
    assert cliente.info_change(migrated, cliente.pack_info("symlink", -1234567, 99)) == ""
    assert cliente.info_change(migrated, cliente.pack_info("file", 1, 99)) == "content"
    [(seq, data)] = saved.pending
    assert seq == 42 and list(json.loads(data)) == ["seq", "event", "path", "is_dir", "type", "ts", "origin"]
    assert json.loads(data)["type"] == "file"
    again = cliente.encode_state("/w", "ws://localhost:8765/", saved)
    assert json.loads(again)["version"] == cliente.STATE_VERSION
    assert cliente.decode_state(again, "/w", "ws://localhost:8765/") == saved


# A state file of format 5 exactly as the client of issue 10 wrote it (its encode_state): the tree nested, a
# FileInfo per file (a regular file, a symbolic link, one not known), a pending event of protocol 3.
FORMAT_5 = (
    '{"version":5,"root":"/w","server":"ws://localhost:8765/","client_id":"abababababababababababababababab",'
    '"secret":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","seq":42,"count":1,'
    '"sum":"0000000000000005","held":null,"tree":{"d":{"f":42419399117767452,"e":{}},"g":null,"l":171798691901},'
    '"pending":[[43,"{\\"seq\\":43,\\"event\\":\\"created\\",\\"path\\":\\"/w/d/novo\\",\\"is_dir\\":false,'
    '\\"type\\":\\"file\\",\\"size\\":100535,\\"mtime\\":\\"2026-11-29T15:40:25.989517+00:00\\",\\"mode\\":\\"0644\\",'
    '\\"ts\\":\\"2026-11-29T10:00:00.000+00:00\\",\\"origin\\":\\"live\\"}"]]}'
)


def test_state_of_format_5_is_migrated_not_discarded(cliente: ModuleType) -> None:
    """Format 5 (a nested tree): every path and FileInfo, the identity, the seq, what the server holds and the
    pending event stay as they were; the next save writes the flat format."""
    saved = cliente.decode_state(FORMAT_5, "/w", "ws://localhost:8765/")
    assert saved is not None
    assert saved.tree == {
        "d": {"f": cliente.pack_info("file", 1234567, 99), "e": {}},
        "g": None,
        "l": cliente.pack_info("symlink", 5, 7),
    }
    assert (saved.identity, saved.seq, saved.held) == (
        cliente.Identity("ab" * 16, "cd" * 32),
        42,
        cliente.Held(1, 5, None),
    )
    [(seq, data)] = saved.pending
    assert seq == 43 and data == json.loads(FORMAT_5)["pending"][0][1]  # protocol 3 already: not upgraded
    again = cliente.encode_state("/w", "ws://localhost:8765/", saved)
    assert json.loads(again)["version"] == cliente.STATE_VERSION == 6
    assert cliente.decode_state(again, "/w", "ws://localhost:8765/") == saved


def test_state_tree_is_flat_at_any_depth(cliente: ModuleType) -> None:
    """The tree is one row per directory: a chain 5,000 levels deep is written and read back without recursion
    (json's own limit is near 1,000 nested values), and its JSON nests four levels at most."""
    top: dict[str, Any] = {}
    node = top
    for _ in range(5000):
        node["f"] = 7
        node = node.setdefault("d", {})
    state = cliente.SavedState(top, cliente.Identity.new())
    text = cliente.encode_state("/w", "ws://localhost:8765", state)
    depth = deepest = 0
    for char in text:  # no name here holds a bracket
        depth += (char in "[{") - (char in "]}")
        deepest = max(deepest, depth)
    assert deepest == 4  # the object, the rows, a row, its names
    saved = cliente.decode_state(text, "/w", "ws://localhost:8765")
    assert saved is not None
    node, depth = saved.tree, 0
    while "d" in node:  # walked, never compared: == on a chain this deep recurses
        assert node["f"] == 7
        node, depth = node["d"], depth + 1
    assert depth == 5000


@pytest.mark.parametrize(
    "rows",
    [
        [],  # no root
        [[0, "", [], []]],  # the root's parent is not -1
        [[-1, "", [], []], [1, "d", [], []]],  # a parent that does not come first
        [[-1, "", ["a"], [1]], [0, "a", [], []]],  # a name twice in a directory
        [[-1, "", ["a", "a"], [1, 2]]],  # twice among the files
        [[-1, "", ["a"], [-1]]],  # a FileInfo is a natural number or null
        [[-1, "", ["a"], []]],  # names and infos of different lengths
        [[-1, "", [], []], [0, "", [], []]],  # a directory without a name
        # Names no directory holds (review 12: a start sent "deleted <root>/", which the server refused, at every
        # start): empty, ".", "..", with a separator or a NUL; and a FileInfo past any release's 132 bits.
        [[-1, "", [""], [1]]],
        [[-1, "", ["."], [1]]],
        [[-1, "", [], []], [0, "..", [], []]],
        [[-1, "", ["a/../x"], [1]]],
        [[-1, "", ["a\u0000b"], [1]]],
        [[-1, "", ["a"], [2**132]]],
        [[-1, "", ["a", "\ud800"], [1, 1]]],  # a lone surrogate no byte makes (re-check 12: a traceback, exit 1)
        [[-1, "", [], []], [0, "x\ud801", [], []]],
    ],
)
def test_state_tree_rows_out_of_shape_are_refused(cliente: ModuleType, rows: list[Any]) -> None:
    assert cliente.unflatten_tree(rows) is None
    text = cliente.encode_state("/w", "ws://localhost:8765", cliente.SavedState({}, cliente.Identity.new()))
    bad = text.replace('"tree":[[-1,"",[],[]]]', f'"tree":{json.dumps(rows, separators=(",", ":"))}')
    assert bad != text and cliente.decode_state(bad, "/w", "ws://localhost:8765") is None


def test_default_state_path_is_per_directory_and_server_and_outside_the_tree(
    cliente: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = cliente.default_state_path("/w", "ws://localhost:8765")
    assert one.startswith(str(tmp_path / "cache" / "monitor_cliente") + os.sep) and one.endswith(".json")
    assert one != cliente.default_state_path("/w", "ws://localhost:8766")
    assert one != cliente.default_state_path("/x", "ws://localhost:8765")
    assert one == cliente.default_state_path("/w", "ws://localhost:8765")


def test_scan_tree_sees_files_dirs_and_links_without_following_them(cliente: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"12345")
    (tmp_path / "d" / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")  # not followed: d/f appears once
    (tmp_path / "skip.json").write_text("{}")
    result = cliente.scan_tree(str(tmp_path), frozenset({str(tmp_path / "skip.json")}))
    assert result is not None
    disk, unreadable = result
    assert disk == {
        "d": {"f": cliente.file_info((tmp_path / "d" / "f").stat()), "empty": {}},
        "link": cliente.file_info((tmp_path / "link").lstat()),
    }
    assert unreadable == []
    assert cliente.scan_tree(str(tmp_path / "missing"), frozenset()) is None


def test_a_scan_shares_with_the_view_the_names_and_infos_that_did_not_change(
    cliente: ModuleType, tmp_path: Path
) -> None:
    """scan_tree(like=the view's tree): the same tree as a scan without it, whose unchanged names and FileInfo are
    the view's own objects (two trees of 10⁶ files at once cost one), and whose changes are its own; a ``like``
    that does not match the disk (a file where a directory was, a directory gone) changes nothing of the result."""
    for name in ("a", "b", "c"):
        (tmp_path / "d").mkdir(exist_ok=True)
        (tmp_path / "d" / f"{name}.txt").write_bytes(name.encode())
    (tmp_path / "e").mkdir()
    (tmp_path / "f").write_bytes(b"f")
    first = cliente.scan_tree(str(tmp_path), frozenset())
    assert first is not None
    view = first[0]
    (tmp_path / "d" / "b.txt").write_bytes(b"bigger")
    (tmp_path / "e").rmdir()
    (tmp_path / "e").write_bytes(b"now a file")
    (tmp_path / "f").unlink()
    (tmp_path / "f").mkdir()
    (tmp_path / "d" / "new.txt").write_bytes(b"n")
    shared = cliente.scan_tree(str(tmp_path), frozenset(), like=view)
    alone = cliente.scan_tree(str(tmp_path), frozenset())
    assert shared is not None and alone is not None
    assert shared == alone
    disk = shared[0]["d"]
    names = {name: name for name in view["d"]}
    for name in ("a.txt", "c.txt"):
        assert next(key for key in disk if key == name) is names[name]
        assert disk[name] is view["d"][name]
    assert disk["b.txt"] != view["d"]["b.txt"]
    assert next(key for key in disk if key == "new.txt") is not None


def test_still_true_checks_the_disk_now(cliente: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert cliente.still_true(C(cliente, "created", str(tmp_path / "f")))
    assert not cliente.still_true(C(cliente, "created", str(tmp_path / "f"), True))
    assert not cliente.still_true(C(cliente, "created", str(tmp_path / "nope")))
    assert cliente.still_true(C(cliente, "deleted", str(tmp_path / "nope")))
    assert not cliente.still_true(C(cliente, "deleted", str(tmp_path / "f")))
    assert cliente.still_true(C(cliente, "deleted", str(tmp_path / "d"), False))  # a file became a directory
    assert cliente.still_true(C(cliente, "modified", str(tmp_path / "f")))


# The digest (protocol 2): the view keeps, change by change, the digest of the tree the server holds --
# what the changes apply returned describe, replayed by the server's own Record on an in-memory
# database -- whatever the start-up scan held (never sent) and whatever the sequence of changes.
NOW = datetime.datetime(2026, 11, 25, 17, 3, 31, tzinfo=datetime.UTC)


def server_digest(servidor: ModuleType, cliente: ModuleType, sent: list[Any]) -> tuple[int, int]:
    """Send ``sent`` (Changes) through the wire format into the real server's record, one event per
    transaction; the digest of the client's tree there."""
    conn = servidor.open_database(":memory:")
    try:
        record = servidor.Record(conn)
        hello = servidor.Hello(client_id="c1", name="c1", root=ROOT, version=2)
        wire = [cliente.encode_event(seq, change, NOW.isoformat()) for seq, change in enumerate(sent, 1)]
        events = servidor.parse_events(cliente.encode_batch(wire)) if wire else []
        for event in events:
            record.store_events(hello, [event], NOW)
        seq, digest = record.digest("c1")
        assert seq == len(events)
        return digest.count, digest.sum
    finally:
        conn.close()


def build_tree(cliente: ModuleType, ops: list[Any]) -> Any:
    """A tree in the View's shape, as a scan would find it, made by the creations and deletions in ``ops``."""
    view = cliente.View(ROOT)
    for kind, rel, is_dir, _ in ops:
        if kind in ("created", "deleted"):
            view.apply(C(cliente, kind, f"{ROOT}/{rel}", is_dir))
    return view.top


def apply_all(cliente: ModuleType, view: Any, ops: list[Any]) -> list[Any]:
    sent: list[Any] = []
    for kind, rel, is_dir, dest in ops:
        if kind == "moved" and (dest == rel or dest.startswith(rel + "/")):
            continue  # a directory cannot be moved into itself
        if kind == "deleted" and rel == "a" and is_dir and dest == "c":
            rel_path = ROOT  # now and then the watched directory itself goes
        else:
            rel_path = f"{ROOT}/{rel}"
        sent += view.apply(C(cliente, kind, rel_path, is_dir, f"{ROOT}/{dest}" if kind == "moved" else None))
    return sent


@settings(max_examples=300, deadline=None, database=None)
@given(operations, operations, st.booleans())
def test_the_incremental_digest_is_what_the_server_holds(
    servidor: ModuleType, cliente: ModuleType, start: list[Any], ops: list[Any], scanned: bool
) -> None:
    view = cliente.View(ROOT)
    if scanned:
        view.load_tree(build_tree(cliente, start))  # the start-up scan: the server holds none of it
    sent = apply_all(cliente, view, ops)
    assert view.digest() == server_digest(servidor, cliente, sent)
    # A full recount over the manifest gives the same digest, and the same entries as the server's replay.
    digest = view.digest()
    manifest = list(view.held_entries())
    assert servidor.Digest.of((os.fsencode(p), d) for p, d, _ in manifest) == servidor.Digest(*digest)
    assert all(value == cliente.path_hash(p, d) for p, d, value in manifest)
    records = [{"event": c.kind, "path": c.path, "dest_path": c.dest_path} for c in sent]
    assert {p for p, _, _ in manifest} == server_replay(records, root=ROOT)
    assert view.digest() == digest
    if not scanned:
        assert {p for p, _, _ in manifest} == set(paths(view))  # nothing unsent: the server holds the view
    # It stays right after the manifest (held entries recounted), change after change.
    more = apply_all(cliente, view, ops[::-1])
    assert view.digest() == server_digest(servidor, cliente, sent + more)


def test_start_up_scan_is_not_in_the_digest_until_it_is_sent(servidor: ModuleType, cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    view.load_tree(tree({"/w/d": (True, None), "/w/d/f": (False, 1), "/w/g": (False, 2)}))
    assert view.digest() == (0, 0)
    sent = view.apply(C(cliente, "modified", "/w/g"))  # the server adds what an event names
    sent += view.apply(C(cliente, "created", "/w/d/new"))
    sent += view.apply(C(cliente, "moved", "/w/d", True, "/w/e"))  # it moves only what it holds
    assert {p for p, _, _ in view.held_entries()} == {"/w/g", "/w/e/new"}
    assert view.digest() == server_digest(servidor, cliente, sent)
    assert view.digest()[0] == 2
    sent += view.apply(C(cliente, "deleted", "/w", True))
    assert view.digest() == (0, 0) == server_digest(servidor, cliente, sent)


def test_names_that_are_not_utf8_hash_their_exact_bytes(servidor: ModuleType, cliente: ModuleType) -> None:
    view = cliente.View(ROOT)
    bad = os.fsdecode(b"/w/b_\xff")
    sent = view.apply(C(cliente, "created", bad))
    assert view.digest() == (1, servidor.entry_hash(b"/w/b_\xff", False))
    assert view.digest() == server_digest(servidor, cliente, sent)
    assert sent == [C(cliente, "created", bad)]


def test_info_change_says_attributes_only_when_size_and_mtime_are_the_same(cliente: ModuleType) -> None:
    """The conservative rule of scans (review 1, item 2): any change of the mtime-and-size fingerprint is content,
    even with the same size (``rsync -a`` of other bytes, ``touch -d``); mode, owner or group alone is attrib."""
    old = cliente.pack_info("file", 1, 2)
    assert cliente.info_change(old, cliente.pack_info("file", 3, 2)) == "content"
    assert cliente.info_change(old, cliente.pack_info("file", 3, 4)) == "content"
    assert cliente.info_change(old, cliente.pack_info("file", 1, 4)) == "attrib"
    assert cliente.info_change(old, cliente.pack_info("file", 1, 2)) == ""
    # Earlier releases kept a hash of the size above the content (1 << 99 and up): nothing reads it.
    assert cliente.info_change(old | 12345 << 99 | 1 << 131, old) == ""
    assert cliente.info_change(old | 12345 << 99, cliente.pack_info("file", 1, 4)) == "attrib"


def test_file_info_is_pack_info_of_the_lstat(cliente: ModuleType, tmp_path: Path) -> None:
    """file_info (one call per file of a scan) packs what pack_info would, for each type of entry."""
    (tmp_path / "f").write_bytes(b"abc")
    (tmp_path / "l").symlink_to("f")
    os.mkfifo(tmp_path / "p")
    for name, kind in (("f", "file"), ("l", "symlink"), ("p", "other")):
        found = (tmp_path / name).lstat()
        attrs = hash((stat.S_IMODE(found.st_mode), found.st_uid, found.st_gid))
        assert cliente.file_info(found) == cliente.pack_info(kind, cliente.fingerprint(found), attrs)


def test_typed_is_dataclasses_replace_of_the_file_type(cliente: ModuleType) -> None:
    """Change.typed (the Describer's, once per event sent) is ``dataclasses.replace(change, file_type=...)``: every
    field kept, ``prior`` too (a field that does not compare)."""
    every = cliente.Change("moved", "/w/a", False, "/w/b", "rescan", True, "file", "symlink", True, prior={"x": 1})
    assert [f.name for f in dataclasses.fields(every)] == [
        "kind",
        "path",
        "is_dir",
        "dest_path",
        "origin",
        "attrib",
        "file_type",
        "replaced",
        "synthetic",
        "prior",
    ]
    for kind in ("symlink", "other", None, "file"):
        typed, replaced = every.typed(kind), dataclasses.replace(every, file_type=kind)
        assert typed == replaced and typed.prior is replaced.prior
        assert [getattr(typed, f.name) for f in dataclasses.fields(every)] == [
            getattr(replaced, f.name) for f in dataclasses.fields(every)
        ]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\u0000b", "\ud800"])
def test_a_migrated_nested_tree_with_a_name_no_directory_holds_is_refused(cliente: ModuleType, name: str) -> None:
    """Format 5 (a dict per directory) is checked as format 6's rows are: such a state file is not used."""
    tree = {"ok": None, "d": {name: None}}
    good = cliente.encode_state("/w", "ws://localhost:8765", cliente.SavedState({}, cliente.Identity.new()))
    text = good.replace('"version":6', '"version":5').replace('"tree":[[-1,"",[],[]]]', f'"tree":{json.dumps(tree)}')
    assert '"version":5' in text and cliente.decode_state(text, "/w", "ws://localhost:8765") is None
    assert cliente.decode_state(text.replace(json.dumps(name), '"ok2"'), "/w", "ws://localhost:8765") is not None


def test_a_state_file_name_of_an_undecodable_byte_is_kept(cliente: ModuleType) -> None:
    """What an undecodable byte of a name becomes (surrogateescape, U+DC80..U+DCFF) is a name: such a row is used."""
    text = cliente.encode_state(
        "/w", "ws://localhost:8765", cliente.SavedState({"a\udcff": None, "d\udc80": {}}, cliente.Identity.new())
    )
    saved = cliente.decode_state(text, "/w", "ws://localhost:8765")
    assert saved is not None and saved.tree == {"a\udcff": None, "d\udc80": {}}

"""Mutations of real files: values of the wrong type or range, dropped and added keys, and byte-level
damage (not UTF-8, truncated, deeply nested), as hypothesis strategies.

A mutation is drawn as data and applied to a parsed document (a dict from TOML or JSON), so every case
starts from a file archbench really reads or writes. What the mutated file must do is decided by the
mutation: damage that no reader can accept (``fatal``) must be refused; a changed value may happen to be
valid, so it may be accepted too.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

DEEP = 3000  # nesting levels: beyond Python's recursion limit for a recursive reader

# Integers a file may hold that no model, grid or option can honour; 99999 threads and a 10-million-deep
# WRN are issue 20's crash and hang. Moderate sizes are left out: they are valid and only slow.
HUGE_INTS = [99_999, 10_000_000, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]
WEIRD_STRINGS = ["", " ", "\t", "３", "٣", "𝟠", "²", " 8 ", "1_0", "0x10", "1e99", "nan", "é中\u202e", "\x1b[31m",
                 "../../../etc/passwd", "/proc/self/mem", "cuda:99", "3x32x32", "0x0x0", "x" * 5000]
scalars = st.one_of(
    st.sampled_from([0, -1, 1, 2, True, False, 0.5, -0.0, 1e308, math.inf, -math.inf, math.nan, *HUGE_INTS, *WEIRD_STRINGS]),
    st.integers(-5, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=5,
)


@dataclass(frozen=True)
class Mutation:
    """``kind``: drop, set, add, rename (a document edit) or a byte-level damage; ``path``: the key path
    edited; ``fatal``: no reader may accept the result."""

    kind: str
    path: tuple = ()
    value: Any = None
    fatal: bool = False

    def __str__(self) -> str:
        shown = repr(self.value)
        return f"{self.kind} {'.'.join(map(str, self.path)) or '<root>'}" + (
            f" = {shown[:80]}{'…' if len(shown) > 80 else ''}" if self.kind in ("set", "add", "rename") else "")


def key_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in ``doc`` (keys of dicts, indexes of lists), the containers' own paths included."""
    paths = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        paths.append((*prefix, key))
        paths += key_paths(value, (*prefix, key))
    return paths


@st.composite
def document_edits(draw, doc: Any, extra_keys: list[str] = ()) -> Mutation:
    """One edit of ``doc``: drop a key, set a value (any type), add a key (a known one or junk), or rename."""
    paths = key_paths(doc)
    kind = draw(st.sampled_from(["drop", "set", "set", "add", "rename"]))
    if kind in ("drop", "set", "rename") and paths:
        path = draw(st.sampled_from(paths))
        if kind == "rename":
            return Mutation(kind, path, draw(st.one_of(st.sampled_from([*extra_keys, ""]), st.text(max_size=8))))
        return Mutation(kind, path, draw(values) if kind == "set" else None)
    containers = [p for p in [(), *paths] if isinstance(_get(doc, p), dict)]
    if not containers:  # a list or scalar document: replace it whole
        return Mutation("set", (), draw(values))
    where = draw(st.sampled_from(containers))
    key = draw(st.one_of(st.sampled_from([*extra_keys, "x"]), st.text(min_size=1, max_size=8)))
    return Mutation("add", (*where, key), draw(values))


def apply_edit(doc: Any, edit: Mutation) -> Any:
    if not edit.path:
        return edit.value
    doc = copy.deepcopy(doc)
    *parent_path, last = edit.path
    parent = _get(doc, tuple(parent_path))
    if edit.kind == "drop":
        del parent[last]
    elif edit.kind in ("set", "add"):
        parent[last] = edit.value
    elif edit.kind == "rename":
        if isinstance(parent, dict):
            parent[str(edit.value)] = parent.pop(last)
        else:
            parent[last] = edit.value
    return doc


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# ---------------------------------------------------------------------------------------------- bytes


@st.composite
def byte_damage(draw, text: bytes) -> tuple[bytes, Mutation]:
    """Damage no parser can read past: bytes that are not UTF-8, a file cut short in its first line, random
    bytes, or an empty file. (Cutting elsewhere may leave a valid document: that is ``truncate``, not fatal.)"""
    kind = draw(st.sampled_from(["not-utf8", "random-bytes", "empty", "truncate", "bom", "crlf", "nul"]))
    at = draw(st.integers(0, max(len(text) - 1, 0)))
    if kind == "not-utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"]))
        return text[:at] + bad + text[at:], Mutation(kind, (at,), bad, fatal=True)
    if kind == "random-bytes":
        noise = draw(st.binary(min_size=1, max_size=200))
        return noise, Mutation(kind, (), noise, fatal=_undecodable(noise))
    if kind == "empty":
        return b"", Mutation(kind, fatal=True)
    if kind == "truncate":
        return text[:at], Mutation(kind, (at,))
    if kind == "bom":
        return b"\xef\xbb\xbf" + text, Mutation(kind)
    if kind == "crlf":
        return text.replace(b"\n", b"\r\n"), Mutation(kind)
    return text[:at] + b"\x00" + text[at:], Mutation(kind, (at,))


def _undecodable(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# ----------------------------------------------------------------------------------------------- TOML


class Raw(str):
    """Text put into a TOML document as it is (e.g. a 3,000-deep array)."""


def deep_toml_array(depth: int = DEEP) -> Raw:
    return Raw("[" * depth + "]" * depth)


def to_toml(doc: dict) -> str:
    """A TOML document of ``doc``: every key quoted, tables inline, so any key and any nesting can be written.
    Integers beyond 64 bits and keys TOML cannot hold are written anyway: the reader must refuse them."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def _toml_key(key: Any) -> str:
    return _toml_string(str(key))


def _toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _toml_string(text: str) -> str:
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
    return f'"{escaped}"'

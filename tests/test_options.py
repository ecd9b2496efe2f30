"""The shared option parsers (every command reuses them)."""

from __future__ import annotations

import pytest

from archbench.errors import UsageError
from archbench.parsing import parse_choices, parse_input, parse_inputs, parse_positive_ints, parse_set


def test_parse_input_accepts_cxhxw():
    assert parse_input("3x64x64") == (3, 64, 64)
    assert parse_input(" 1X28x28 ") == (1, 28, 28)
    assert parse_inputs("3x32x32,3x64x64,3x32x32") == [(3, 32, 32), (3, 64, 64)]


@pytest.mark.parametrize("text, message", [
    ("3x64", "expected CxHxW"),
    ("abc", "expected CxHxW"),
    ("3x64x64x2", "expected CxHxW"),
    ("0x32x32", "zero dimension"),
    ("-3x32x32", "expected CxHxW"),
])
def test_parse_input_rejects_malformed_shapes(text, message):
    with pytest.raises(UsageError, match=message):
        parse_input(text)


def test_parse_lists():
    assert parse_positive_ints("1, 8,32", "--batch") == [1, 8, 32]
    for bad in ("0", "1,x", "-1", ""):
        with pytest.raises(UsageError, match="--batch"):
            parse_positive_ints(bad, "--batch")
    assert parse_choices("infer,train", "--mode", ("infer", "train")) == ["infer", "train"]
    with pytest.raises(UsageError, match="--mode value 'eval' is not one of: infer, train"):
        parse_choices("eval", "--mode", ("infer", "train"))


def test_parse_set_reads_toml_literals():
    assert parse_set(["depth=28", "dropout=0.5", "bias=true", "blocks=[3, 4, 6, 3]", 'shortcut="identity"', "shortcut2=pad"]) == {
        "depth": 28, "dropout": 0.5, "bias": True, "blocks": [3, 4, 6, 3], "shortcut": "identity", "shortcut2": "pad"}
    for bad in ("depth", "=3", "depth="):
        with pytest.raises(UsageError, match="key=value"):
            parse_set([bad])

"""Fuzz: option and argument values of every command, in the forms the contract test's fixed table
(tests/test_cli_contract.py) does not reach: Unicode digits, surrounding and Unicode whitespace, integers
of 2**63 and beyond (and past Python's 4,300-digit int conversion limit), 5,000-character values, and
output locations under /proc and /sys, with over-long names, or thousands of folders deep.

Exit codes: a valid value written with Unicode digits or whitespace may be accepted or refused (exit 0, or 1
if the one cell it measures fails; 2) — whichever archbench documents, never a traceback. An integer of
2**63 or more, and a 5,000-character value, where a number, shape or run is expected, is bad input: exit 2,
and the message does not echo the 5,000 characters. Output locations: any of 0/1/2 (a store that cannot
be written is a warning, a CSV that cannot is an error), with a message when not 0.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import LONG_VALUE, Expect, check_case, fuzz_settings
from tests.test_cli_contract import (
    BASE,
    BASE_FOR_OPTION,
    COMMAND,
    FREE_TEXT,
    _fill,
    _kind,
    _with_argument,
    _with_option,
)

pytestmark = pytest.mark.fuzz  # in the default run; pytest -m fuzz runs the fuzzer alone (see tests/fuzz/harness.py)

# The contract test's bases, with bench and compare at one cell of mnist-cnn: a value that turns out valid
# measures one cell (bench's base, without --batch, measured its every default batch: 12 CPU seconds a case).
BASES = {**BASE, "bench": ["bench", "mnist-cnn", "--mode", "infer", "--batch", "1", "--max-time", "0.05",
                           "--out", "{out}.csv"],
         "compare": ["compare", "mnist-cnn", "--mode", "infer", "--batch", "1", "--max-time", "0.05",
                     "--out", "{out}"]}
NUMBER_KINDS = {"N", "N[,N...]", "D", "N|auto", "MINUTES", "FRACTION", "SECONDS", "CxHxW", "CxHxW[,...]",
                "RUN", "BASE", "NEW", "RUN|RESULTS.csv|DIR"}
PATH_KINDS = {"FILE.csv", "DIR", "FILE.db", "UNIT.json", "RESULTS.csv", "FILE|NAME", "RUN|RESULTS.csv|DIR",
              "BASE", "NEW", "MODULE:ATTR"}
VALID = {"N": "1", "N[,N...]": "1", "D": "1", "N|auto": "1", "MINUTES": "5", "FRACTION": "0.5", "SECONDS": "0.05",
         "CxHxW": "1x28x28", "CxHxW[,...]": "1x28x28", "RUN": "1", "BASE": "1", "NEW": "1",
         "RUN|RESULTS.csv|DIR": "1", "DEVICES": "cpu", "DEVICE": "cpu", "MODES": "infer", "DTYPES": "fp32",
         "SOURCE": "specs", "MODEL": "mnist-cnn", "local|slurm": "local", "KEY=VALUE": "num_classes=3",
         "NAME": "debug", "FEATURES": "a100"}
DIGIT_ZEROS = [0xFF10, 0x0660, 0x0966, 0x09E6, 0x1D7CE, 0x0E50]  # fullwidth, Arabic-Indic, Devanagari, ...
SPACES = [" ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\u200b", "\ufeff"]
HUGE = [str(2**63 - 1), str(2**63), str(2**64), str(10**30), "1" + "0" * 5000]  # the last: past int()'s digit limit


def _unicode_digits(text: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if c.isascii() and c.isdigit() else c for c in text)


@st.composite
def values_of(draw, kind: str) -> tuple[str, frozenset[int], str]:
    """(value, allowed exits, what the form is) for an option of ``kind``."""
    valid = VALID.get(kind, "x")
    form = draw(st.sampled_from(["spaces", "digits", "huge", "long", "random"]
                                + (["location"] if kind in PATH_KINDS else [])))
    if form == "spaces":
        before, after = draw(st.sampled_from(SPACES)), draw(st.sampled_from(["", *SPACES]))
        return before + valid + after, frozenset({0, 1, 2}), "a valid value in Unicode/ASCII whitespace"
    if form == "digits":
        return _unicode_digits(valid, draw(st.sampled_from(DIGIT_ZEROS))), frozenset({0, 1, 2}), "Unicode digits"
    if form == "huge":
        huge = draw(st.sampled_from(HUGE))
        value = draw(st.sampled_from([str(huge), f"-{huge}", f"1,{huge}", f"{huge}x1x1", f"1x1x{huge}", f"{huge}.5"]))
        return value, frozenset({2} if kind in NUMBER_KINDS else {0, 1, 2}), "an integer >= 2**63"
    if form == "long":
        value = draw(st.sampled_from(["x" * 5000, "9" * 5000, "é" * 3000, "1," * 2500]))
        return value, frozenset({2} if kind in NUMBER_KINDS else {0, 1, 2}), "a 5,000-character value"
    if form == "location":
        # (Not /dev/null or /dev/full: archbench writes FILE.env.json and FILE.lock beside its CSV, and as
        # root they would be created in /dev.)
        value = draw(st.sampled_from(["/proc/archbench-fuzz", "/proc/self/status", "/sys/archbench-fuzz.csv",
                                      "n" * 300, "n" * 300 + ".csv", "d/" * 400 + "x.csv"]))  # 400 deep: pytest can still clean it up
        return value, frozenset({0, 1, 2}), "an unusable location"
    alphabet = st.characters(categories=["Nd", "Zs", "Cc", "No", "Pd"], exclude_characters="\x00")
    return draw(st.text(alphabet, min_size=1, max_size=2)), frozenset({0, 1, 2}), "random Unicode digits/space"


def _parameters():
    """(command, parameter) for every option and argument that takes a value the contract knows how to break."""
    for name, command in sorted(COMMAND.commands.items()):
        for param in command.params:
            if _kind(param) not in FREE_TEXT and _kind(param) != "FLAG":
                yield name, param


PARAMETERS = list(_parameters())


@st.composite
def option_cases(draw) -> tuple[list[str], frozenset[int], str, str]:
    name, param = draw(st.sampled_from(PARAMETERS))
    value, exits, form = draw(values_of(_kind(param)))
    if param.param_type_name == "argument":
        return _with_argument(BASES[name], COMMAND.commands[name], param, value), exits, form, value
    option = param.opts[0]
    template = BASE_FOR_OPTION.get((name, option), BASES[name])
    return _with_option(template, option, value), exits, form, value


@fuzz_settings(20)  # ~1.4 s a case (a valid value measures a cell): the bulk of the default minute
@given(case=option_cases())
def test_option_values(cli, tmp_path, monkeypatch, case):
    template, exits, form, value = case
    folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    monkeypatch.chdir(folder)
    argv = _fill(template, folder)
    long_values = (value,) if len(value) > LONG_VALUE else ()
    check_case(cli, argv, Expect(exits, form, long_values=long_values))

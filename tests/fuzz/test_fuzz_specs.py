"""Fuzz: spec files and study files, mutations of the real ones, through `check`, `summary`, `list` and
`compare --study`.

Exit codes: damage no TOML reader can read past (not UTF-8, a duplicated key, a 3,000-deep array, an empty
study) must be refused as bad input, exit 2. An edited value may still make a valid file, so it may also
exit 0, or 1 where the model it describes fails to build or run (`summary`), or its count drifts (`check`).
"""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO
from tests.fuzz.harness import Case, fuzz_settings, run_case
from tests.fuzz.mutations import Mutation, apply_edit, byte_damage, deep_toml_array, document_edits, to_toml

pytestmark = pytest.mark.fuzz  # in the default run; pytest -m fuzz runs the fuzzer alone (see tests/fuzz/harness.py)

SPEC_KEYS = ["name", "family", "builder", "description", "input", "params", "args", "inputs", "overrides",
             "depth", "widen_factor", "blocks", "width", "groups", "dropout"]
STUDY_KEYS = ["title", "models", "reference", "grid", "options", "executor", "targets", "devices", "inputs",
              "batches", "modes", "dtypes", "cuda", "cpu", "max_time_s", "precision", "min_samples", "threads",
              "channels_last", "compiled", "workers", "model", "name", "args"]


def _real_spec(stem: str) -> dict:
    return tomllib.loads((REPO / "specs" / f"{stem}.toml").read_text())


# The README's spec for a model of one's own (a `builder` instead of a family), beside examples/mynet.py.
BUILDER_SPEC = {"name": "mynet-w64", "builder": "./mynet.py:MyNet", "description": "MyNet at width 64",
                "input": "3x32x32", "params": 1_009_482, "args": {"width": 64}}
SPECS = [_real_spec(stem) for stem in ("mnist-cnn", "wrn-16-8", "resnet-cifar-n5", "resnext-50")] + [BUILDER_SPEC]

DEFAULT_STUDY = (REPO / "specs" / "studies" / "default.toml").read_bytes()
# The default study's shape at mnist-cnn's scale: one model (in the table form), one cheap cell.
CHEAP_STUDY = {
    "title": "fuzz", "models": [{"model": "mnist-cnn", "name": "mnist"}], "reference": "mnist",
    "grid": {"devices": "cpu", "inputs": ["1x28x28"], "batches": [1], "modes": ["infer"], "dtypes": ["fp32"],
             "cuda": {"batches": [1]}},
    "options": {"max_time_s": 0.05, "precision": 0.03, "min_samples": 5},
}


@st.composite
def toml_files(draw, doc: dict, keys: list[str]) -> tuple[bytes, list[Mutation]]:
    """``doc`` after one or two edits, written as TOML, and sometimes damaged after that."""
    edits = []
    for _ in range(draw(st.integers(1, 2))):
        edit = draw(document_edits(doc, keys))
        doc = apply_edit(doc, edit)
        edits.append(edit)
    text = to_toml(doc).encode()
    damage = draw(st.sampled_from([None, None, "bytes", "duplicate", "deep"]))
    if damage == "bytes":
        text, mutation = draw(byte_damage(text))
        edits.append(mutation)
    elif damage == "duplicate" and text.strip():
        lines = text.splitlines(keepends=True)
        line = draw(st.sampled_from(lines))
        text += line
        edits.append(Mutation("duplicate-key", (line[:40].decode(errors="replace"),), fatal=True))
    elif damage == "deep" and doc:
        key = draw(st.sampled_from(sorted(doc, key=str)))
        text = to_toml({**doc, key: deep_toml_array()}).encode()
        edits.append(Mutation("deep-nesting", (key,), fatal=True))
    return text, edits


@st.composite
def spec_cases(draw) -> Case:
    original = dict(draw(st.sampled_from(SPECS)))
    name = f"fz-{original['name']}"
    original["name"] = name  # the built-in spec's name would be refused as a clash
    text, edits = draw(toml_files(original, SPEC_KEYS))
    fatal = any(e.fatal for e in edits) or text.strip() == b""
    command = draw(st.sampled_from([
        ["check", name, "--source", "specs", "--specs", "{dir}"],
        ["summary", name, "--depth", "1", "--specs", "{dir}"],
        ["list", name, "--source", "specs", "--specs", "{dir}"],
    ]))
    return Case(command, frozenset({2} if fatal else {0, 1, 2}), "; ".join(map(str, edits)),
                files={f"{name}.toml": text}, copies={"mynet.py": REPO / "examples" / "mynet.py"},
                names=(f"{name}.toml",) if fatal else ())


@st.composite
def study_cases(draw) -> Case:
    if draw(st.integers(0, 4)) == 0:  # the real default study, damaged (valid, it would measure two big models)
        text, mutation = draw(byte_damage(DEFAULT_STUDY).filter(lambda damaged: damaged[1].fatal))
        edits = [mutation]
    else:
        text, edits = draw(toml_files(CHEAP_STUDY, STUDY_KEYS))
    fatal = any(e.fatal for e in edits) or text.strip() == b""
    argv = ["compare", "--study", "{dir}/study.toml", "--out", "{dir}/report", "--max-time", "0.05"]
    return Case(argv, frozenset({2} if fatal else {0, 1, 2}), "; ".join(map(str, edits)),
                files={"study.toml": text}, names=("study.toml",) if fatal else ())


@fuzz_settings(20)
@given(case=spec_cases())
def test_mutated_spec_files(cli, tmp_path, case):
    run_case(cli, case, tmp_path)


@fuzz_settings(8)
@given(case=study_cases())
def test_mutated_study_files(cli, tmp_path, case):
    run_case(cli, case, tmp_path)

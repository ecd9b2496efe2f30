"""Property-based tests of every parser of user input: any string either parses to a valid value or
raises archbench's own error (a UsageError / StudyError the CLI turns into exit 2) — never another
exception, which would reach the user as a traceback."""

from __future__ import annotations

import math
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archbench.errors import ArchbenchError, StudyError, UsageError
from archbench.parsing import (
    MAX_SECONDS,
    parse_choices,
    parse_fraction,
    parse_input,
    parse_inputs,
    parse_positive_ints,
    parse_seconds,
    parse_set,
)
from archbench.study import study_from_mapping

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what users type into these options, plus arbitrary unicode.
_ALPHABET = string.digits + "xX×,.-+e =[]\"'abcnfiuptrs_" + " \t"
typed = st.text(alphabet=_ALPHABET, max_size=24)
anything = st.one_of(typed, st.text(max_size=24))


def _parses_or_usage_error(parse, text):
    try:
        return parse(text)
    except UsageError as exc:
        assert str(exc)  # a message, never an empty error
        return None


@SETTINGS
@given(anything)
def test_input_shapes(text):
    shape = _parses_or_usage_error(lambda t: parse_input(t, "--input"), text)
    if shape is not None:
        assert len(shape) == 3 and all(isinstance(d, int) and d >= 1 for d in shape)
    shapes = _parses_or_usage_error(lambda t: parse_inputs(t, "--input"), text)
    if shapes is not None:
        assert shapes and len(set(shapes)) == len(shapes)


@SETTINGS
@given(anything)
def test_positive_integer_lists(text):
    values = _parses_or_usage_error(lambda t: parse_positive_ints(t, "--batch"), text)
    if values is not None:
        assert values and all(isinstance(v, int) and v >= 1 for v in values)


@SETTINGS
@given(anything)
def test_choices(text):
    values = _parses_or_usage_error(lambda t: parse_choices(t, "--mode", ("infer", "train")), text)
    if values is not None:
        assert values and set(values) <= {"infer", "train"}


@SETTINGS
@given(anything)
def test_fractions_and_seconds(text):
    fraction = _parses_or_usage_error(lambda t: parse_fraction(t, "--precision"), text)
    if fraction is not None:
        assert 0 < fraction < 1
    seconds = _parses_or_usage_error(lambda t: parse_seconds(t, "--max-time"), text)
    if seconds is not None:
        assert 0 < seconds <= MAX_SECONDS and math.isfinite(seconds)


@SETTINGS
@given(st.lists(anything, max_size=3))
def test_set_overrides(items):
    overrides = _parses_or_usage_error(parse_set, items)
    if overrides is not None:
        assert all(isinstance(k, str) and k and k == k.strip() for k in overrides)


_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True), typed),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(typed, inner, max_size=3)),
    max_leaves=6,
)
_study_keys = st.sampled_from(["title", "models", "reference", "grid", "options", "model"])
_grid_keys = st.sampled_from(["devices", "inputs", "batches", "modes", "dtypes", "cpu", "batch"])
_option_keys = st.sampled_from(["max_time_s", "precision", "min_samples", "channels_last", "compiled", "threads", "x"])
studies = st.fixed_dictionaries(
    {"models": st.one_of(st.just(["mnist-cnn", "wrn-16-8"]), _values)},
    optional={
        "reference": _values,
        "title": _values,
        "grid": st.one_of(st.dictionaries(_grid_keys, _values, max_size=4), _values),
        "options": st.one_of(st.dictionaries(_option_keys, _values, max_size=4), _values),
    },
).flatmap(lambda d: st.dictionaries(_study_keys, _values, max_size=1).map(lambda extra: {**d, **extra}))


@SETTINGS
@given(studies)
def test_study_values(data):
    """Any TOML-like table is a valid Study or a StudyError naming the problem."""
    try:
        study = study_from_mapping(data, name="prop")
    except StudyError as exc:
        assert str(exc).startswith("study:") or "prop" in str(exc), str(exc)
        return
    except ArchbenchError as exc:  # pragma: no cover - reported with its type, to fix the message's class
        raise AssertionError(f"{type(exc).__name__} instead of StudyError: {exc}") from exc
    assert study.models and study.reference in study.models
    assert all(b >= 1 for b in study.grid.batches)
    assert 0 < study.options.measure.precision < 1 and study.options.measure.max_time_s > 0

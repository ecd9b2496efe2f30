"""An input factory, checked: ``make_inputs(batch, input_shape, dtype, device)`` — named by a reference
(``--inputs``, a spec's or study's ``inputs``) or handed to the Python API (``make_inputs=``).

What the user wrote is called only through :class:`InputFactory`, so its failures take the documented path:
a factory whose signature cannot take the four arguments is refused when it is loaded; one that raises
(or calls ``sys.exit``) fails with its ``file:line`` and message; one that returns ``None`` is refused —
it is never silently replaced by archbench's default images. Out-of-memory errors pass through (a cell
records them as ``oom``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.catalog.grammar import ModelReferenceError, UserCodeError
from archbench.catalog.loading import locate, one_line
from archbench.errors import PATH_ECHO_LIMIT, quoted
from archbench.oom import is_out_of_memory
from archbench.usercode import code_roots, exits_as_failures, shown_path

FORM = "make_inputs(batch, input_shape, dtype, device)"
RETURNS = "a tensor, a tuple of positional arguments or a dict of keyword arguments"
_EXAMPLE_ARGS = (1, (3, 224, 224), "fp32", "cpu")  # what a signature must accept (only bound, never called)


@dataclass(frozen=True, eq=False)
class InputFactory:
    """The user's factory ``fn`` (``label``: its reference or name), called as archbench calls it."""

    fn: Callable[..., Any]
    label: str
    roots: tuple[Path, ...] = ()  # where its code lives: a failure is located to the last frame there

    def __call__(self, batch: int, input_shape: tuple[int, ...], dtype: str, device: str) -> Any:
        try:
            with exits_as_failures(f"input factory {quoted(self.label, PATH_ECHO_LIMIT)}"):
                data = self.fn(batch, input_shape, dtype, device)
        except Exception as exc:  # noqa: BLE001 - the user's factory failed: located, as the README promises
            if is_out_of_memory(exc):
                raise
            raise UserCodeError(f"{locate(exc, self.roots)}: input factory {quoted(self.label, PATH_ECHO_LIMIT)} raised {one_line(exc)} "
                                f"(called as make_inputs({batch}, {tuple(input_shape)}, {dtype!r}, {device!r}))") from exc
        if data is None:
            raise UserCodeError(f"{self._where()}input factory {quoted(self.label, PATH_ECHO_LIMIT)} returned None: expected {RETURNS} "
                                "(the model's forward is called with it).")
        return data

    def _where(self) -> str:
        code = getattr(self.fn, "__code__", None)
        return f"{shown_path(code.co_filename)}:{code.co_firstlineno}: " if code is not None else ""


def input_factory(fn: Any, label: str, roots: tuple[Path, ...] = ()) -> InputFactory:
    """``fn`` checked to be an input factory: callable, and with a signature that takes the four arguments
    (:class:`ModelReferenceError` otherwise). An :class:`InputFactory` is returned as is."""
    if isinstance(fn, InputFactory):
        return fn
    if not callable(fn):
        raise ModelReferenceError(f"{quoted(label, PATH_ECHO_LIMIT)} is {type(fn).__name__}, not an input factory: expected a function "
                                  f"{FORM} returning {RETURNS}.")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a C function without a signature: its call will say
        signature = None
    if signature is not None:
        try:
            signature.bind(*_EXAMPLE_ARGS)
        except TypeError:
            raise ModelReferenceError(f"input factory {quoted(label, PATH_ECHO_LIMIT)} takes {_name(fn)}{signature}: it must take the four "
                                      f"arguments of {FORM} and return {RETURNS}.") from None
    return InputFactory(fn, label, roots or code_roots(fn))


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


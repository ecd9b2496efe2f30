"""The grammar of a model reference (:mod:`archbench.catalog.refs` lists the forms): parsing one into a
:class:`Reference` imports nothing; the errors a reference can raise."""

from __future__ import annotations

import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from archbench.errors import SpecError, quoted

Kind = Literal["name", "tv", "timm", "hf", "plugin", "module", "file"]
PREFIXES: tuple[Kind, ...] = ("tv", "timm", "hf", "plugin")
CODE_KINDS = ("module", "file")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_FORMS = ("a model name (resnext-50, resnet50), tv:NAME, timm:NAME, hf:MODEL_TYPE, module:attr (mypkg.models:MyNet) or "
          "PATH.py:attr (./nets/mynet.py:MyNet)")


class ModelReferenceError(SpecError):
    """A model reference that does not parse, or names something that is not there (a module, a file, an
    attribute, a timm model) or that is not a model."""


class UserCodeError(SpecError):
    """The user's code failed while archbench imported it or built a model with it (located to file:line)."""


class AmbiguousModelWarning(UserWarning):
    """A plain name that more than one source knows: the first was taken; the message says how to pick
    another."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference: ``kind``, the name, dotted module or file path (``target``) and, for code,
    the attribute path (``attr``)."""

    text: str
    kind: Kind
    target: str
    attr: str = ""

    @property
    def is_code(self) -> bool:
        return self.kind in CODE_KINDS


_NAMED = re.compile(r"^\s*([A-Za-z0-9_][\w.+-]*)\s*=(.*)$", re.S)  # a name: letters, digits, _ . + -
FILE_MODULE_PREFIX = "archbench_file_"  # the module name a file reference is imported under


def split_name(text: str) -> tuple[str | None, str]:
    """``NAME=REFERENCE`` (``mine=./nets/mynet.py:Net``) -> the name and the reference; a reference without a
    name -> ``(None, reference)``. No reference form has ``=`` after such a name, so the two never clash."""
    match = _NAMED.match(str(text))
    if not match:
        return None, str(text).strip()
    name, ref = match.group(1), match.group(2).strip()
    if not ref:
        raise ModelReferenceError(f"{quoted(str(text).strip())} names a model {quoted(name)} but gives no reference after "
                                  f"'=': write NAME=REFERENCE, e.g. {name}=./nets/mynet.py:MyNet.")
    return name, ref


def parse_reference(text: str) -> Reference:
    """Parse a model reference (no import). Raises :class:`ModelReferenceError` naming the accepted forms."""
    text = str(text).strip()
    if not text:
        raise ModelReferenceError(f"an empty model name: give {_FORMS}.")
    head, sep, rest = text.partition(":")
    if sep and head in PREFIXES:
        if not rest.strip():
            raise ModelReferenceError(f"{quoted(text)} names no model after '{head}:': e.g. {head}:resnet50.")
        return Reference(text, head, rest.strip())  # type: ignore[arg-type]
    path, sep, attr = text.rpartition(":")
    if not sep:
        if text.endswith(".py"):  # a file without its attribute: loading it lists what it has
            return Reference(text, "file", text)
        return Reference(text, "name", text)
    if path.endswith(".py") or "/" in path or os.sep in path or path.startswith("."):
        if not path.endswith(".py"):
            raise ModelReferenceError(f"{quoted(path)} is not a Python file: a file reference is PATH.py:attr, "
                                      "e.g. ./nets/mynet.py:MyNet.")
        return Reference(text, "file", path, _attribute_path(text, attr))
    if _DOTTED.match(path):
        return Reference(text, "module", path, _attribute_path(text, attr))
    raise ModelReferenceError(f"{quoted(text)} is not a model reference: expected {_FORMS}.")


def _attribute_path(text: str, attr: str) -> str:
    if attr and not _DOTTED.match(attr):
        raise ModelReferenceError(f"{quoted(text)}: {quoted(attr)} is not an attribute name: expected e.g. MyNet or "
                                  "build_mynet after the colon.")
    return attr


def builder_reference(text: str, base_dir: Path | None = None) -> str:
    """A reference a spec can build with (anything but a plain name), a file path in it made absolute
    (relative to ``base_dir``, default the current directory)."""
    reference = parse_reference(text)
    if reference.kind == "name":
        raise ModelReferenceError(f"{quoted(text)} is a model name, not a builder: expected tv:NAME, timm:NAME, "
                                  "hf:MODEL_TYPE, module:attr or PATH.py:attr.")
    return absolute_reference(reference, base_dir)


def code_reference(text: str, base_dir: Path | None = None) -> str:
    """A reference to Python code (``module:attr`` or ``PATH.py:attr``, e.g. an input factory), a file
    path made absolute."""
    reference = parse_reference(text)
    if not reference.is_code:
        raise ModelReferenceError(f"{quoted(text)} does not name Python code: expected module:attr "
                                  "(mypkg.data:make_inputs) or PATH.py:attr (./data.py:make_inputs).")
    return absolute_reference(reference, base_dir)


def absolute_reference(reference: Reference, base_dir: Path | None) -> str:
    if reference.kind == "hf":  # hf:./folder
        from archbench.catalog.models import hf_zoo

        return hf_zoo.absolute(reference.target, base_dir)
    if reference.kind != "file":
        return reference.text
    path = Path(reference.target).expanduser()
    path = path if path.is_absolute() else Path(base_dir or Path.cwd()).absolute() / path
    return f"{os.path.normpath(path)}:{reference.attr}" if reference.attr else str(os.path.normpath(path))


def family_of(builder: str) -> str:
    """The family a builder reference's models are listed under."""
    reference = parse_reference(builder)
    return {"tv": "torchvision", "timm": "timm", "hf": "transformers", "plugin": reference.target}.get(reference.kind, "python")


def describe(obj: Any) -> str:
    """The first line of the object's own docstring, else its qualified name."""
    target = obj if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) else type(obj)
    doc = target.__doc__ if isinstance(target.__doc__, str) else ""  # a C type's may be a descriptor
    doc = doc.strip()
    if doc:
        return doc.splitlines()[0]
    loaded_from_a_file = target.__module__.startswith(FILE_MODULE_PREFIX)  # its module name is archbench's own
    return target.__qualname__ if loaded_from_a_file else f"{target.__module__}.{target.__qualname__}"

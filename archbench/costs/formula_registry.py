"""Which formula counts an op (:func:`formula_for`): a user's (:func:`register_flop_formula`, or a plugin of
the entry-point group ``archbench.flop_formulas``), archbench's own tables (:mod:`archbench.costs.formulas`),
or torch's; :func:`is_free` for ops that do no arithmetic, :func:`evaluate` to apply one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils._pytree import tree_map

from archbench.costs.formulas import (
    ARCHBENCH_FORMULAS,
    CONVENTIONAL_FORMULAS,
    ENTRY_POINT_GROUP,
    FREE_OPS,
    FVCORE_FORMULAS,
    KINDS,
    MACS,
    OTHER,
    OVERLOAD_FORMULAS,
    RNN_FORMULAS,
    Formula,
    FormulaError,
    aten,
    input_elements,
    output_elements,
    torch_macs,
)
from archbench.errors import quoted

_USER_FORMULAS: dict[Any, Formula] = {}
_plugins_loaded = False


# ------------------------------------------------------------------------------------ registry


def register_flop_formula(op: Any, fn: Callable[..., int], kind: str = MACS, source: str | None = None) -> None:
    """Count ``op`` (``torch.ops.ns.name``, an overload of it, or ``"ns::name"``) with ``fn``.

    ``fn`` gets the op's arguments with every tensor replaced by its shape, and ``out_shape`` (the
    output's shape, or a tuple of them); it returns MACs for ``kind`` ``"macs"`` (the primary total)
    or ``"norm_pool"``, operations for ``"other"``. An op can have one user formula: registering it
    twice raises :class:`FormulaError`. A user formula replaces torch's or archbench's for that op."""
    packet = _packet(op)
    if kind not in KINDS:
        raise FormulaError(f"kind {kind!r} for {op} is not one of {', '.join(KINDS)}.")
    if packet in _USER_FORMULAS:
        raise FormulaError(f"a FLOP formula for {_name(packet)} is already registered "
                           f"({_USER_FORMULAS[packet].source}): register each op once.")
    label = source or f"user ({getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)})"
    _USER_FORMULAS[packet] = Formula(kind, fn, label)


def unregister_flop_formula(op: Any) -> None:
    """Remove a user formula (the op falls back to torch's or archbench's, if any)."""
    _USER_FORMULAS.pop(_packet(op), None)


def _packet(op: Any):
    if isinstance(op, str):
        namespace, _, name = op.partition("::")
        try:
            return getattr(getattr(torch.ops, namespace), name)
        except (AttributeError, RuntimeError) as error:
            raise FormulaError(f"op {quoted(op)} is not a registered torch op: load the library that defines it "
                               "before registering its formula.") from error
    if isinstance(op, torch._ops.OpOverload):
        return op.overloadpacket
    if isinstance(op, torch._ops.OpOverloadPacket):
        return op
    raise FormulaError(f"{op!r} is not a torch op: expected torch.ops.<namespace>.<name> or 'namespace::name'.")


def load_plugins() -> None:
    """Register the formulas of the ``archbench.flop_formulas`` entry points (once per process)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        formulas: Mapping = loaded() if callable(loaded) and not isinstance(loaded, Mapping) else loaded
        for op, fn in formulas.items():
            register_flop_formula(op, fn, source=f"plugin {entry.name} ({entry.value})")


def _name(packet) -> str:
    qualified = packet._qualified_op_name  # "aten::mm"
    return qualified.removeprefix("aten::")


def formula_for(func) -> Formula | None:
    """The formula for one dispatched op (an OpOverload): a user's, archbench's, torch's, fvcore's or a
    conventional one, in that order; ``None`` for ops with no arithmetic or no formula (see
    :func:`is_free`)."""
    packet = func.overloadpacket
    found = (_USER_FORMULAS.get(packet) or ARCHBENCH_FORMULAS.get(packet) or RNN_FORMULAS.get(packet)
             or _torch_formula(packet) or FVCORE_FORMULAS.get(packet) or OVERLOAD_FORMULAS.get(func)
             or CONVENTIONAL_FORMULAS.get(packet))
    if found is not None:
        return found
    if _name(packet) in FREE_OPS or func.is_view:
        return None
    if _is_pointwise(func) or _name(packet).endswith(("_backward", "_backward_data")):
        return _ELEMENTWISE
    if torch.Tag.reduction in func.tags:
        return _REDUCTION
    return None


def _is_pointwise(func) -> bool:
    """Tagged pointwise, or the in-place variant (``hardswish_``) of a pointwise op."""
    if torch.Tag.pointwise in func.tags:
        return True
    name = _name(func.overloadpacket)
    functional = getattr(aten, name[:-1], None) if name.endswith("_") else None
    return functional is not None and any(
        torch.Tag.pointwise in getattr(functional, overload).tags for overload in functional.overloads())


_ELEMENTWISE = Formula(OTHER, output_elements(1), "conventional")
_REDUCTION = Formula(OTHER, input_elements, "conventional")
_TORCH_CACHE: dict[Any, Formula | None] = {}


def _torch_formula(packet) -> Formula | None:
    if packet not in _TORCH_CACHE:
        from torch.utils.flop_counter import flop_registry

        raw = flop_registry.get(packet)
        _TORCH_CACHE[packet] = Formula(MACS, torch_macs(raw), "torch", raw=True) if raw is not None else None
    return _TORCH_CACHE[packet]


def is_free(func) -> bool:
    """Whether an op without a formula does no arithmetic (a view, copy, fill, allocation)."""
    name = _name(func.overloadpacket)
    return name in FREE_OPS or func.is_view or name.endswith(("_copy", "_copy_"))


def evaluate(formula: Formula, args, kwargs, out) -> int:
    """``formula`` on one call: tensors replaced by their shapes."""
    if formula.raw:
        return int(formula.fn(*args, out_val=out, **kwargs))
    args, kwargs, out_shape = tree_map(_shape_of, (args, kwargs, out))
    return int(formula.fn(*args, out_shape=out_shape, **kwargs))


def _shape_of(value):
    return value.shape if isinstance(value, torch.Tensor) else value


def op_name(func) -> str:
    return _name(func.overloadpacket)


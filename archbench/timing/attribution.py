"""Per-module time of one step, from torch.profiler's events (Kineto): ops' self times summed per module.

How a step's time is attributed (wrapping torch.profiler; nothing of torch is patched):

* **Forward**: while :class:`ModuleRanges` is active, every listed module's forward runs inside a
  ``record_function`` range named ``archbench::<dotted name>`` (entered by a forward pre-hook, left by a
  forward hook). An op belongs to the innermost range that encloses it in the profiler's event tree.
* **Backward** (train mode): autograd runs a node for each forward op that needs a gradient, inside an
  ``autograd::engine::evaluate_function: XBackward0`` event carrying the forward op's *sequence number*.
  The forward op with that number (the last one that saw it: the op that created the node) gives the
  module. (Module backward hooks are not used: their ``BackwardHookFunction`` breaks in-place ops such as
  ``ReLU(inplace=True)``.) The gradient accumulation and the loss belong to no module.
* **Time of an op**: on the CPU, its *self* CPU time (its duration less its child ops'), so nested ops
  (``conv2d`` → ``convolution`` → ``mkldnn_convolution``) are counted once; on CUDA, its *self device*
  time: the duration of the GPU kernels it launched (the profiler's device events, linked to the
  launching op by correlation id), never host timestamps. Time the profiler ranges themselves take
  (hook and Python overhead between ops) is no op's and counts nowhere.

Nothing here imports torch at module level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from archbench.timing.hooks import ForwardHooks

RANGE_PREFIX = "archbench::"
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "
OUTSIDE = "(outside modules)"  # work of the step no module's forward made: the loss, gradient accumulation


@dataclass(frozen=True)
class StepTimes:
    """One profiled step, in milliseconds: each listed module's own time (ops run directly in it, not in a
    listed child), forward and backward, the time of ops outside every module, and the step's total op time."""

    forward_own_ms: dict[str, float] = field(default_factory=dict)
    backward_own_ms: dict[str, float] = field(default_factory=dict)
    outside_ms: float = 0.0
    total_ms: float = 0.0

    def own_ms(self) -> dict[str, float]:
        total: Counter = Counter(self.forward_own_ms)
        total.update(self.backward_own_ms)
        return dict(total)


class ModuleRanges(ForwardHooks):
    """Context manager: a ``record_function`` range around every forward of the named modules
    (``{module: dotted name}``), through global forward hooks installed only while it is active."""

    def __init__(self, names: dict[int, str]) -> None:
        self._names = names  # id(module) -> dotted name ("" for the model itself)
        self._open: list[Any] = []

    def _closed(self) -> None:
        while self._open:  # a forward that raised leaves its ranges open
            self._close(self._open.pop())

    def _enter(self, module, _inputs) -> None:
        from torch.autograd.profiler import record_function

        name = self._names.get(id(module))
        if name is not None:
            label = record_function(RANGE_PREFIX + name)
            label.__enter__()
            self._open.append(label)

    def _leave(self, module, _inputs, _output) -> None:
        if id(module) in self._names and self._open:
            self._close(self._open.pop())

    @staticmethod
    def _close(label) -> None:
        label.__exit__(None, None, None)


def step_times(events: Iterable[Any], device_time: bool) -> StepTimes:
    """Attribute the op events of one profiled step (``prof.events()``) to modules (see the module
    docstring). ``device_time``: use the ops' self device (kernel) time, else their self CPU time."""
    events = [e for e in events if _on_host(e)]
    module_of: dict[int, str | None] = {}
    forward: Counter = Counter()
    backward: Counter = Counter()
    seq_module: dict[int, str] = {}
    backward_events = []
    outside = total = 0.0
    for event in sorted(events, key=lambda e: e.time_range.start):
        if event.name.startswith(RANGE_PREFIX):
            continue
        module, is_backward, node = _enclosing(event, module_of)
        if is_backward:
            backward_events.append((event, node))
            continue
        ms = _self_ms(event, device_time)
        total += ms
        if module is None:
            outside += ms
        else:
            forward[module] += ms
            if event.sequence_nr is not None and event.sequence_nr >= 0:
                seq_module[event.sequence_nr] = module  # the last op to see a number made its node
    for event, node in backward_events:
        ms = _self_ms(event, device_time)
        total += ms
        module = seq_module.get(node.sequence_nr) if node.sequence_nr is not None and node.sequence_nr >= 0 else None
        if module is None:
            outside += ms
        else:
            backward[module] += ms
    return StepTimes(dict(forward), dict(backward), outside, total)


def _on_host(event) -> bool:
    """Host-side events (ops, ranges); kernels reach us through the ops that launched them."""
    device_type = getattr(event, "device_type", None)
    return device_type is None or getattr(device_type, "name", str(device_type)) == "CPU"


def _enclosing(event, cache: dict[int, Any]) -> tuple[str | None, bool, Any]:
    """``(module of the innermost enclosing range, whether under a backward node, that node's event)``."""
    chain = []
    parent = event.cpu_parent
    found: tuple[str | None, bool, Any] = (None, False, None)
    while parent is not None:
        if id(parent) in cache:
            found = cache[id(parent)]
            break
        chain.append(parent)
        if parent.name.startswith(BACKWARD_PREFIX):
            found = (None, True, parent)
            break
        if parent.name.startswith(RANGE_PREFIX):
            found = (parent.name[len(RANGE_PREFIX):], False, None)
            break
        parent = parent.cpu_parent
    for visited in chain:
        cache[id(visited)] = found
    if event.name.startswith(BACKWARD_PREFIX):  # a backward node's own overhead
        return None, True, event
    return found


def _self_ms(event, device_time: bool) -> float:
    if device_time:
        return float(getattr(event, "self_device_time_total", 0.0)) / 1e3
    return float(event.self_cpu_time_total) / 1e3

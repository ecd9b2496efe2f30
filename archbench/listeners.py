"""Listeners: the objects a run calls back as it goes (a sweep's :class:`~archbench.sweep.run.SweepListener`,
a compare run's progress, the store's recorder). Every callback is optional: :func:`notify` calls one only
where the listener has it, and :class:`Forwarding` wraps a listener, passing on what it does not handle."""

from __future__ import annotations

from typing import Any


def notify(listener: Any, method: str, *args: Any) -> None:
    """``listener.method(*args)``, when there is a listener and it has that callback."""
    callback = getattr(listener, method, None) if listener is not None else None
    if callback is not None:
        callback(*args)


class Forwarding:
    """A listener around ``inner``: every callback it does not define is ``inner``'s (none when ``inner`` is
    None or lacks it)."""

    inner: Any = None

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(inner, name)

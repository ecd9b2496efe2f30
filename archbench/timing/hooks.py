"""Global module forward hooks, installed only while a context is active: the one installer behind the
profile's module ranges (:mod:`archbench.timing.attribution`) and the costs' autograd-node map
(:mod:`archbench.costs.traffic`).

Nothing here imports torch at module level.
"""

from __future__ import annotations

from typing import Any, Self


class ForwardHooks:
    """Context manager: while active, every module's forward calls :meth:`_enter` before it runs and
    :meth:`_leave` after it (also when it raises: ``always_call``). Subclasses override those two, and
    :meth:`_closed` to clean up once the hooks are removed."""

    _hooks: list[Any]

    def __enter__(self) -> Self:
        from torch import nn

        self._hooks = [nn.modules.module.register_module_forward_pre_hook(self._enter),
                       nn.modules.module.register_module_forward_hook(self._leave, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in getattr(self, "_hooks", []):
            hook.remove()
        self._hooks = []
        self._closed()

    def _enter(self, module: Any, inputs: Any) -> None:
        """Before ``module``'s forward runs."""

    def _leave(self, module: Any, inputs: Any, output: Any) -> None:
        """After ``module``'s forward ran (or raised)."""

    def _closed(self) -> None:
        """After the hooks are removed."""

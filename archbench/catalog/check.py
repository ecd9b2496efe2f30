"""Parameter-count regression checks (``archbench check``): build each model on the ``meta`` device
(no memory, no init cost) and compare its parameter count with the one its spec expects."""

from __future__ import annotations

from dataclasses import dataclass

from archbench.catalog.registry import count_params
from archbench.catalog.spec import ModelSpec, set_expected_params
from archbench.resources import meta_build_within_bounds


@dataclass(frozen=True)
class CheckResult:
    model: str
    source: str
    expected_params: int | None
    params: int
    path: str | None = None

    @property
    def ok(self) -> bool:
        return self.expected_params == self.params

    @property
    def difference(self) -> int | None:
        return None if self.expected_params is None else self.params - self.expected_params


def check_model(spec: ModelSpec) -> CheckResult:
    params = count_params(meta_build_within_bounds(spec))
    return CheckResult(spec.name, spec.source, spec.params, params, str(spec.path) if spec.path else None)


def accept(spec: ModelSpec, result: CheckResult) -> bool:
    """Write the built count into the spec file (``check --update``); False when there is no file to
    update (torchvision models take their count from torchvision's metadata)."""
    if result.ok or spec.path is None:
        return False
    set_expected_params(spec, result.params)
    return True

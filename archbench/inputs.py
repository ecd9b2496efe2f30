"""What a model's forward is called with: one image tensor (most vision models), a tuple of positional
arguments, or a dict of keyword arguments (detectors, multi-modal models, an input factory's result).

The one place that knows how to call a model on its inputs and how to describe them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archbench.usercode import USER_EXITS, as_failure


@dataclass(frozen=True)
class ModelInputs:
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Any) -> ModelInputs:
        """``tensor`` -> ``model(tensor)``; ``(a, b)`` / ``[a, b]`` -> ``model(a, b)``; ``{"x": a}`` ->
        ``model(x=a)``; a :class:`ModelInputs` as is."""
        if isinstance(data, ModelInputs):
            return data
        if isinstance(data, Mapping):
            return cls((), dict(data))
        if isinstance(data, (tuple, list)):
            return cls(tuple(data), {})
        return cls((data,), {})

    def call(self, model: Any) -> Any:
        """``model(*args, **kwargs)``; a forward that calls ``sys.exit`` fails as a model does (see
        :mod:`archbench.usercode`)."""
        try:  # not a context manager: this is the timed call
            return model(*self.args, **self.kwargs)
        except USER_EXITS as exc:
            raise as_failure(exc, "the model's forward") from exc

    @property
    def image(self) -> Any:
        """The one image batch (N, C, H, W) when that is all the forward takes, else ``None``."""
        if self.kwargs or len(self.args) != 1:
            return None
        x = self.args[0]
        return x if getattr(x, "dim", lambda: 0)() == 4 else None

    @property
    def batch(self) -> int | None:
        """The leading dimension of the first tensor (the batch, by convention), if any."""
        for value in (*self.args, *self.kwargs.values()):
            shape = getattr(value, "shape", None)
            if shape is not None and len(shape) > 0:
                return int(shape[0])
        return None

    def describe(self) -> str:
        """``1x3x32x32`` for one tensor; ``(1x3x32x32, 1x10)`` / ``{image: 1x3x32x32, text: 1x77}`` otherwise."""
        def one(value: Any) -> str:
            shape = getattr(value, "shape", None)
            return "x".join(map(str, shape)) if shape is not None else type(value).__name__

        if not self.kwargs and len(self.args) == 1:
            return one(self.args[0])
        if not self.kwargs:
            return "(" + ", ".join(one(a) for a in self.args) + ")"
        return "{" + ", ".join(f"{k}: {one(v)}" for k, v in self.kwargs.items()) + "}"

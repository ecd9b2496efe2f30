"""One timed iteration of a model: fixed inputs, autocast for bf16/fp16, ``infer`` (forward under
``inference_mode``) or ``train`` (forward, cross-entropy, backward). torch is imported inside functions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from archbench.errors import ModelRunError
from archbench.inputs import ModelInputs
from archbench.timing.compiled import compile_model


def make_images(batch: int, input: tuple[int, int, int], device: str, channels_last: bool = False):
    """Fixed random images (seed 0), ``batch x C x H x W`` fp32 on ``device``."""
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input, generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast_for(device: str, dtype: str):
    """bf16/fp16 run under autocast (mixed precision: fp32 weights, convolutions and matmuls in the
    dtype), as these dtypes are trained and commonly served; fp32 runs as is."""
    import torch

    if dtype == "fp32":
        return contextlib.nullcontext
    from archbench.timing.peak import torch_dtype

    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    return lambda: torch.autocast(device_type=device_type, dtype=torch_dtype(dtype))


def first_float_tensor(output):
    """The tensor a training step takes its loss on: the output itself, ``.logits`` (torchvision's
    Inception / GoogLeNet namedtuples), else the first floating tensor of a tuple, list, dict or dataclass
    (depth first, in order)."""
    import dataclasses

    import torch

    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        return output.logits
    if isinstance(output, dict):
        children = list(output.values())
    elif isinstance(output, (tuple, list)):
        children = list(output)
    elif dataclasses.is_dataclass(output):
        children = [getattr(output, f.name) for f in dataclasses.fields(output)]
    else:
        return None
    for child in children:
        found = first_float_tensor(child)
        if found is not None:
            return found
    return None


def loss_of(output, labels: list):
    """Cross-entropy on fixed random labels (seed 0) when the output's first floating tensor is a batch of
    logits ``(N, classes)``; its mean otherwise (a detector's map, an embedding). Raises
    :class:`ModelRunError` when the output holds no floating tensor."""
    import torch
    import torch.nn.functional as F

    logits = first_float_tensor(output)
    if logits is None:
        raise ModelRunError(
            f"the model returned {type(output).__name__} with no floating-point tensor: train mode needs one to "
            "take a loss on (the first floating tensor of the output is used)."
        )
    if logits.dim() != 2:
        return logits.float().mean()
    if not labels:
        generator = torch.Generator().manual_seed(0)
        labels.append(torch.randint(0, logits.shape[1], (logits.shape[0],), generator=generator).to(logits.device))
    return F.cross_entropy(logits.float(), labels[0])


def make_step(model, inputs, mode: str, dtype: str, device: str, compiled: bool = False, *,
              runner: Callable | None = None) -> Callable[[], None]:
    """One timed iteration. ``infer``: ``eval()`` + ``inference_mode`` forward. ``train``: ``train()``,
    gradients set to None, forward, cross-entropy on fixed random labels (seed 0), backward. ``runner``: what is
    called instead of the model (a backend's: archbench.timing.backends)."""
    import torch

    call = ModelInputs.of(inputs).call
    autocast = autocast_for(device, dtype)
    module = model
    model.train(mode == "train")
    if runner is None:
        runner = compile_model(model) if compiled else model
    if mode == "infer":

        def infer_step() -> None:
            with torch.inference_mode(), autocast():
                call(runner)

        return infer_step

    labels: list = []

    def train_step() -> None:
        module.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_of(call(runner), labels)
        loss.backward()

    return train_step

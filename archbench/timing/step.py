"""One timed iteration of a model: fixed inputs, autocast for bf16/fp16, ``infer`` (forward under
``inference_mode``) or ``train`` (forward, cross-entropy, backward). torch is imported inside functions."""

from __future__ import annotations

import contextlib
from typing import Callable

from archbench.errors import ModelRunError
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


def logits_of(output):
    """The logits of a classifier's output: the tensor itself, ``.logits`` (torchvision's Inception /
    GoogLeNet namedtuples in train mode) or the first element of a tuple."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ModelRunError(
        f"the model returned {type(output).__name__}, not logits: train mode needs a tensor, a tuple whose "
        "first element is the logits, or an object with .logits."
    )


def make_step(model, inputs, mode: str, dtype: str, device: str, compiled: bool = False) -> Callable[[], None]:
    """One timed iteration. ``infer``: ``eval()`` + ``inference_mode`` forward. ``train``: ``train()``,
    gradients set to None, forward, cross-entropy on fixed random labels (seed 0), backward."""
    import torch
    import torch.nn.functional as F

    autocast = autocast_for(device, dtype)
    module = model
    model.train(mode == "train")
    runner = compile_model(model) if compiled else model
    if mode == "infer":

        def infer_step() -> None:
            with torch.inference_mode(), autocast():
                runner(inputs)

        return infer_step

    labels: list = []

    def train_step() -> None:
        module.zero_grad(set_to_none=True)
        with autocast():
            logits = logits_of(runner(inputs))
            if not labels:
                generator = torch.Generator().manual_seed(0)
                labels.append(torch.randint(0, logits.shape[1], (logits.shape[0],), generator=generator).to(logits.device))
            loss = F.cross_entropy(logits.float(), labels[0])
        loss.backward()

    return train_step

"""The CIFAR ResNet of seed document ``002`` (its final version).

3x3 stem conv (with bias) + BN + ReLU; four stages of 16/32/64/128 channels with strides 1/2/2/2;
post-activation blocks (conv with bias, BN, ReLU, conv, BN, add, ReLU); a zero-padding identity
shortcut (extra channels zero-padded, stride by 1x1 max-pool subsampling; no projection convs); each
stage holds 1 + n blocks, as that code's ``_make_layer`` builds them; ``AvgPool2d(8)``; linear.

``AvgPool2d(8)`` is kept as the document has it, so the network needs at least 64x64 input.
``shortcut="identity"`` is the document's first draft (``out += residual`` with no padding), which fails
when the channel count changes: useful to see how archbench reports a model that does not run.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from archbench.catalog.models._init import kaiming_init
from archbench.catalog.registry import register_family


class IdentityPadding(nn.Module):
    """Zero-pads the channel dimension to ``out_channels`` and subsamples by ``stride``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.num_zero_pads = out_channels - in_channels
        self.identity = nn.MaxPool2d(1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.identity(F.pad(x, (0, 0, 0, 0, 0, self.num_zero_pads)))


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.projection = IdentityPadding(in_channels, out_channels, stride) if shortcut == "pad" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        out += x if self.projection is None else self.projection(x)
        return self.relu2(out)


class ResNetCifar(nn.Module):
    def __init__(self, blocks: list[int], shortcut: str, num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU(inplace=True)
        channels = 16
        layers = []
        for n, width, stride in zip(blocks, (16, 32, 64, 128), (1, 2, 2, 2)):
            stage = [ResBlock(channels, width, stride, shortcut)] + [ResBlock(width, width, 1, shortcut) for _ in range(n)]
            layers.append(nn.Sequential(*stage))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AvgPool2d(8)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.linear(x.view(x.size(0), -1))


@register_family("resnet-cifar")
def resnet_cifar(
    blocks: int | list[int] = 5,
    shortcut: Literal["pad", "identity"] = "pad",
    num_classes: int = 10,
    in_channels: int = 3,
) -> nn.Module:
    """``blocks``: n (the same for every stage) or four per-stage values; each stage holds 1 + n blocks."""
    per_stage = [blocks] * 4 if isinstance(blocks, int) else list(blocks)
    if len(per_stage) != 4 or min(per_stage) < 0:
        raise ValueError(f"blocks must be one non-negative n or four of them, got {blocks}")
    return kaiming_init(ResNetCifar(per_stage, shortcut, num_classes, in_channels))

"""Wide ResNet (Zagoruyko & Komodakis, 2016), as in the seed documents ``003`` (bias-free) and ``000``
(biased convs, dropout 0.5).

Pre-activation blocks (BN-ReLU-conv, dropout between the two 3x3 convs), a 1x1 projection shortcut
when the shape changes, N = (depth-4)/6 blocks per stage, widths 16k/32k/64k, then BN-ReLU-global
pool-linear. Module names follow the seed: ``conv1``, ``stage1..3``, ``bn``, ``relu``, ``avg_pool``, ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from archbench.catalog.models._init import kaiming_init
from archbench.catalog.registry import register_family
from archbench.errors import SpecError


class WideBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float, bias: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + shortcut  # pre-activation: no ReLU after the add


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, dropout: float, bias: bool, in_channels: int):
        super().__init__()
        n = blocks_per_stage(depth)
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=bias)
        channels = 16
        stages = []
        for width, stride in zip(widths, (1, 2, 2)):
            blocks = [WideBlock(channels if i == 0 else width, width, stride if i == 0 else 1, dropout, bias) for i in range(n)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        x = self.avg_pool(self.relu(self.bn(x)))
        return self.fc(torch.flatten(x, 1))


def blocks_per_stage(depth: int) -> int:
    """N = (depth - 4) / 6; any other depth is an error naming the valid depths around it."""
    if depth >= 10 and (depth - 4) % 6 == 0:
        return (depth - 4) // 6
    lower = depth - (depth - 4) % 6
    near = [lower, lower + 6] if lower >= 10 else [10]
    raise SpecError(
        f"WRN depth {depth} is invalid: depth must be 6N+4 with N >= 1 blocks per stage "
        f"(10, 16, 22, 28, 34, 40, ...); nearest valid: {' or '.join(map(str, near))}."
    )


@register_family("wrn")
def wrn(
    depth: int,
    widen_factor: int,
    num_classes: int = 10,
    dropout: float = 0.3,
    bias: bool = False,
    in_channels: int = 3,
) -> nn.Module:
    """Wide ResNet WRN-depth-k; ``bias=True, dropout=0.5`` reproduces seed ``000``."""
    return kaiming_init(WideResNet(depth, widen_factor, num_classes, dropout, bias, in_channels))

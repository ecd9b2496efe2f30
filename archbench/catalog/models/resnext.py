"""ResNeXt, CIFAR-style, as in seed document ``004`` (after weiaicunzai/pytorch-cifar100).

3x3 stem (64) + BN + ReLU; four stages of bottleneck "C" blocks with 64/128/256/512 channels and
expansion 4; each block's grouped path has cardinality C and C*D channels with D = int(4*out/64); a
1x1+BN projection shortcut when the shape changes; ReLU after the add; global pool; linear.
The seed's code also groups the first 1x1 conv (``grouped_first_conv=True``, the default); the paper's
block has a dense first 1x1 (``grouped_first_conv=false``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archbench.catalog.models._init import kaiming_init
from archbench.catalog.registry import register_family

EXPANSION = 4


class BottleneckC(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, cardinality: int, base_depth: int, grouped_first_conv: bool):
        super().__init__()
        inner = cardinality * int(base_depth * out_channels / 64)
        self.split_transforms = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, groups=cardinality if grouped_first_conv else 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cardinality, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, out_channels * EXPANSION, 1, bias=False),
            nn.BatchNorm2d(out_channels * EXPANSION),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels * EXPANSION:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels * EXPANSION, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels * EXPANSION),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.split_transforms(x) + self.shortcut(x))


class ResNeXt(nn.Module):
    def __init__(self, blocks: list[int], cardinality: int, base_depth: int, grouped_first_conv: bool, num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        channels = 64
        stages = []
        for n, width, stride in zip(blocks, (64, 128, 256, 512), (1, 2, 2, 2)):
            layers = []
            for i in range(n):
                layers.append(BottleneckC(channels, width, stride if i == 0 else 1, cardinality, base_depth, grouped_first_conv))
                channels = width * EXPANSION
            stages.append(nn.Sequential(*layers))
        self.conv2, self.conv3, self.conv4, self.conv5 = stages
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))
        return self.fc(torch.flatten(self.avg(x), 1))


@register_family("resnext")
def resnext(
    blocks: list[int],
    cardinality: int = 32,
    base_depth: int = 4,
    grouped_first_conv: bool = True,
    num_classes: int = 100,
    in_channels: int = 3,
) -> nn.Module:
    """ResNeXt (cardinality x base_depth d); ``blocks`` per stage, e.g. [3, 4, 6, 3] for ResNeXt-50."""
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"blocks must be four positive block counts (one per stage), got {blocks}")
    return kaiming_init(ResNeXt(list(blocks), cardinality, base_depth, grouped_first_conv, num_classes, in_channels))

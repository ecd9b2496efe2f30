"""A small CIFAR network of one's own, to try archbench on (README: "Bring your own model").

    archbench summary ./examples/mynet.py:MyNet --input 3x32x32
    archbench compare ./examples/mynet.py:MyNet resnext-50 --input 3x32x32 --batch 1,8
    archbench summary ./examples/mynet.py:MyNet --set width=64 --set blocks=3

Nothing to install: archbench loads the file.
"""

from __future__ import annotations

from torch import nn


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, 1x1 projection (MobileNetV2); an identity shortcut when the shapes match."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, expansion: int = 4):
        super().__init__()
        hidden = channels_in * expansion
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, channels_out, 1, bias=False), nn.BatchNorm2d(channels_out),
        )
        self.shortcut = stride == 1 and channels_in == channels_out

    def forward(self, x):
        out = self.body(x)
        return x + out if self.shortcut else out


class MyNet(nn.Module):
    """A small CIFAR network: a 3x3 stem, three stages of inverted-residual blocks (width, 2x, 4x), global pooling."""

    def __init__(self, width: int = 32, blocks: int = 2, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(inplace=True))
        stages, channels = [], width
        for stage in range(3):
            out = width * 2**stage
            stages += [InvertedResidual(channels if i == 0 else out, out, 2 if i == 0 and stage > 0 else 1)
                       for i in range(blocks)]
            channels = out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))

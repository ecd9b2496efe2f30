"""The MNIST CNN of seed document ``002`` (LeNet-5 style): two 5x5 convs with functional max-pooling,
then three linear layers; 1x28x28 input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archbench.catalog.registry import register_family


class MnistCNN(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


@register_family("mnist-cnn")
def mnist_cnn(num_classes: int = 10) -> nn.Module:
    return MnistCNN(num_classes)

"""ResNet-50 in SPIN's own definition (torchvision-compatible key names, no torchvision).

Keys: conv1, bn1, layer{1-4}.{i}.conv{1,2,3}/bn{1,2,3}, layer{L}.0.downsample.{0,1}. The stride sits on the 3x3
conv of each bottleneck; the first block of every layer has a projection shortcut.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNet50Backbone(nn.Module):
    """Stem + 4 stages + 7x7 average pool -> (B, 2048) features. Holds no parameters of its own."""

    LAYERS = (3, 4, 6, 3)
    WIDTHS = (64, 128, 256, 512)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for index, (blocks, width) in enumerate(zip(self.LAYERS, self.WIDTHS), start=1):
            stride = 1 if index == 1 else 2
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(in_channels, width, stride if b == 0 else 1))
                in_channels = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.avgpool = nn.AvgPool2d(7, stride=1)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode BatchNorm as one conv with bias: w' = w * g/s, b' = (b - mean) * g/s + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True).to(conv.weight)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_batchnorm(model: nn.Module, copy: bool = True) -> nn.Module:
    """A copy of an eval-mode ResNet-50 model with every BatchNorm folded into its convolution, in channels-last
    layout: the memory-bound BatchNorm passes vanish (on this VM they made batch 16 slower per image than batch 1).
    Outputs equal the original to float rounding. For inference only; its state_dict has no BN keys.
    `copy=False` folds `model` itself (a loader's fresh model: no 100 MB copy)."""
    import copy as copying

    model = (copying.deepcopy(model) if copy else model).eval()
    for module in model.modules():
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, _fold(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, Bottleneck) and module.downsample is not None:
            conv, bn = module.downsample[0], module.downsample[1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module.downsample = nn.Sequential(_fold(conv, bn))
    return model.to(memory_format=torch.channels_last)

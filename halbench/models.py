"""Backbones, each ending in an embedding head of size embedding_dim (a registry).

Every model maps normalized float images `[B, C, H, W]` to embeddings `[B, embedding_dim]`.
The head is a linear layer, optionally followed by BatchNorm1d (`head_bn`). Losses that need a
classifier (softmax) bring it themselves.

A plugin adds a backbone by registering a factory; `build` rejects params it does not declare:

    @MODELS.register("my_net")
    def my_net(*, in_channels, image_size, embedding_dim, width=64) -> nn.Module: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from halbench.checks import check_bool, check_int
from halbench.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def available(pattern: str = "*") -> list[str]:
    """Registered backbone names matching an fnmatch pattern."""
    return MODELS.names(pattern)


def parameters(name: str) -> dict[str, Any]:
    """The parameters backbone `name` accepts (sizes aside), with their defaults."""
    return {k: v for k, v in MODELS.parameters(name).items() if k not in _SIZES}


# Set by build() from the data and the grid, never by the suite's model params.
_SIZES = ("in_channels", "image_size", "embedding_dim")


def build(
    name: str, *, in_channels: int, image_size: int, embedding_dim: int, **params: Any
) -> nn.Module:
    """Build backbone `name` with an embedding head. The registry checks the parameters: an
    unknown one, or one of a wrong type or range, raises one ValueError naming it."""
    sizes = {"in_channels": in_channels, "image_size": image_size, "embedding_dim": embedding_dim}
    for key, value in sizes.items():
        check_int(key, value, minimum=1)
    return MODELS.build(name, sizes, params)


class EmbeddingHead(nn.Sequential):
    """Linear features -> embedding_dim, optionally BatchNorm1d on the embedding."""

    def __init__(self, in_features: int, embedding_dim: int, head_bn: bool) -> None:
        layers: list[nn.Module] = [nn.Linear(in_features, embedding_dim, bias=not head_bn)]
        if head_bn:
            layers.append(nn.BatchNorm1d(embedding_dim))
        super().__init__(*layers)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


@MODELS.register("small_cnn")
def small_cnn(
    *,
    in_channels: int,
    image_size: int,
    embedding_dim: int,
    width: int = 32,
    head_bn: bool = False,
) -> nn.Module:
    """CPU-friendly CNN: three conv-BN-ReLU stages (width, 2w, 4w) with max-pooling.

    The last stage is average-pooled to 2x2 (not 1x1): where a feature sits still matters on
    small images, and it costs only a wider head.
    """
    w = check_int("width", width, minimum=1)
    check_bool("head_bn", head_bn)
    if image_size < 8:
        raise ValueError(f"small_cnn needs image_size >= 8, got {image_size}")
    return nn.Sequential(
        *_conv_bn(in_channels, w),
        nn.MaxPool2d(2),
        *_conv_bn(w, 2 * w),
        nn.MaxPool2d(2),
        *_conv_bn(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        EmbeddingHead(16 * w, embedding_dim, head_bn),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@MODELS.register("resnet18_cifar")
def resnet18_cifar(
    *,
    in_channels: int,
    image_size: int,
    embedding_dim: int,
    width: int = 64,
    head_bn: bool = False,
) -> nn.Module:
    """ResNet-18, CIFAR variant: 3x3 stride-1 stem, no max-pool, 4 stages of 2 blocks."""
    w = check_int("width", width, minimum=1)
    check_bool("head_bn", head_bn)
    layers: list[nn.Module] = [*_conv_bn(in_channels, w)]
    cin = w
    for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
        stride = 1 if i == 0 else 2
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), EmbeddingHead(cin, embedding_dim, head_bn)]
    return nn.Sequential(*layers)


class _ToRGB(nn.Module):
    """Repeat a grayscale channel three times for ImageNet-shaped torchvision stems."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


@MODELS.register("torchvision")
def torchvision_model(
    *,
    in_channels: int,
    image_size: int,
    embedding_dim: int,
    arch: str = "resnet18",
    head_bn: bool = False,
) -> nn.Module:
    """Any torchvision classification model by name (`arch`), randomly initialized.

    Its classifier is built with embedding_dim outputs, which makes it the linear embedding
    head; grayscale input is repeated to three channels.
    """
    import torchvision

    check_bool("head_bn", head_bn)
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise ValueError(f"arch must be a torchvision classification model, got {arch!r}")
    if in_channels not in (1, 3):
        raise ValueError(f"torchvision models take 1 or 3 input channels, got {in_channels}")
    net = torchvision.models.get_model(arch, weights=None, num_classes=embedding_dim)
    layers: list[nn.Module] = [_ToRGB()] if in_channels == 1 else []
    layers.append(net)
    if head_bn:
        layers.append(nn.BatchNorm1d(embedding_dim))
    return nn.Sequential(*layers)

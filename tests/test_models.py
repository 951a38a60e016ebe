"""Backbones: every registered model maps images to embeddings of the asked size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from halbench import models

# Small sizes keep the ResNets cheap on CPU; torchvision models get their smallest arch.
PARAMS = {"torchvision": {"arch": "resnet18"}, "resnet18_cifar": {"width": 8}}


@pytest.mark.parametrize("name", models.available())
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_registered_models_embed(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = models.build(
        name, in_channels=channels, image_size=size, embedding_dim=12, **PARAMS.get(name, {})
    )
    x = torch.randn(3, channels, size, size)
    emb = model(x)
    assert emb.shape == (3, 12)
    emb.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", models.available())
def test_head_bn_normalizes_the_embedding(name: str) -> None:
    model = models.build(
        name, in_channels=3, image_size=32, embedding_dim=8, head_bn=True, **PARAMS.get(name, {})
    )
    last = list(model.modules())[-1]
    assert isinstance(last, nn.BatchNorm1d) and last.num_features == 8
    emb = model.train()(torch.randn(16, 3, 32, 32))
    torch.testing.assert_close(emb.mean(0), torch.zeros(8), atol=1e-4, rtol=0)


def test_small_cnn_width_scales_channels() -> None:
    narrow = models.build("small_cnn", in_channels=1, image_size=28, embedding_dim=8, width=8)
    wide = models.build("small_cnn", in_channels=1, image_size=28, embedding_dim=8, width=16)
    convs = [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 16, 32]
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())


def test_resnet18_cifar_has_the_cifar_stem() -> None:
    model = models.build("resnet18_cifar", in_channels=3, image_size=32, embedding_dim=8)
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # 1 stem + 8 blocks x 2 convs + 3 downsampling shortcuts
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 20


def test_bad_parameters_raise_value_errors() -> None:
    kw = {"in_channels": 3, "image_size": 32, "embedding_dim": 8}
    with pytest.raises(ValueError, match="unknown model 'small_cn'"):
        models.build("small_cn", **kw)
    unknown = "model 'small_cnn': unknown parameter 'depth'; expected one of: width, head_bn"
    with pytest.raises(ValueError, match=unknown):
        models.build("small_cnn", depth=3, **kw)
    with pytest.raises(ValueError, match="unknown parameter 'widht'.*did you mean 'width'"):
        models.build("small_cnn", widht=3, **kw)

    with pytest.raises(ValueError, match="width"):
        models.build("small_cnn", width=0, **kw)
    with pytest.raises(ValueError, match="head_bn"):
        models.build("small_cnn", head_bn="yes", **kw)
    with pytest.raises(ValueError, match="embedding_dim"):
        models.build("small_cnn", in_channels=3, image_size=32, embedding_dim=0)
    with pytest.raises(ValueError, match="arch"):
        models.build("torchvision", arch="resnet_nope", **kw)
    # The shared checks (halbench/checks.py): bools are not ints, huge ints stay one short line.
    with pytest.raises(ValueError, match="width must be an integer >= 1, got True"):
        models.build("small_cnn", width=True, **kw)
    with pytest.raises(ValueError, match="image_size must be an integer >= 1, got an integer of"):
        models.build("small_cnn", in_channels=3, image_size=10**400, embedding_dim=8)
    with pytest.raises(ValueError, match="head_bn must be true or false, got 1"):
        models.build("resnet18_cifar", head_bn=1, **kw)


def test_parameters_lists_defaults_without_the_sizes() -> None:
    assert models.parameters("small_cnn") == {"width": 32, "head_bn": False}
    assert models.parameters("torchvision") == {"arch": "resnet18", "head_bn": False}


def test_available_filters_with_wildcards() -> None:
    assert {"small_cnn", "resnet18_cifar", "torchvision"} <= set(models.available())
    assert models.available("resnet*") == ["resnet18_cifar"]

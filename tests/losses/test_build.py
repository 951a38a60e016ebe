"""build(), available(), parameters() and the ValueErrors for bad parameters and inputs."""

from __future__ import annotations

import importlib

import pytest
import torch

import halbench.losses as losses


def build(name: str, **params):
    return losses.build(name, num_classes=4, embedding_dim=5, **params)


def test_available_lists_the_zoo_and_filters_by_wildcard() -> None:
    names = losses.available()
    assert {"hal", "al", "nca", "snnl", "nca_memory", "proxy_nca", "normface", "cosface"} <= set(
        names
    )
    assert {"arcface", "triplet", "contrastive", "softmax"} <= set(names)
    assert names == sorted(names)
    assert losses.available("*nca*") == ["nca", "nca_memory", "proxy_nca"]


def test_parameters_lists_defaults_through_the_class_hierarchy() -> None:
    assert losses.parameters("hal") == {
        "scale": 16.0,
        "init": "normal",
        "learn_anchors": True,
        "lr_scale": 1.0,
        "impl": "fast",
    }
    assert losses.parameters("cosface")["margin"] == 0.35
    assert "init" in losses.parameters("cosface")


@pytest.mark.parametrize("name", losses.available())
def test_every_builtin_loss_takes_impl(name: str) -> None:
    assert losses.parameters(name)["impl"] == "fast"
    assert build(name, memory_size=10).impl == "fast"
    assert build(name, memory_size=10, impl="reference").impl == "reference"
    with pytest.raises(ValueError, match="impl must be one of reference, fast"):
        build(name, memory_size=10, impl="quick")


def test_memory_size_reaches_only_losses_that_need_it() -> None:
    assert build("hal", memory_size=1000).has_anchors
    assert build("nca_memory", memory_size=1000).memory_size == 1000
    with pytest.raises(ValueError, match="memory_size .* is required"):
        build("nca_memory")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("hall", {}, "unknown loss 'hall'; available: .*did you mean 'hal'"),
        ("hal", {"scael": 2.0}, "loss 'hal': unknown parameter 'scael'.*did you mean 'scale'"),
        ("hal", {"scale": 0}, "scale must be > 0"),
        ("hal", {"scale": -1.0}, "scale must be > 0"),
        ("hal", {"scale": float("nan")}, "scale must be a finite number"),
        ("hal", {"scale": "16"}, "scale must be a finite number"),
        ("hal", {"init": "uniform"}, "init must be one of normal, orthogonal, simplex"),
        ("hal", {"learn_anchors": "yes"}, "learn_anchors must be true or false"),
        ("al", {"lr_scale": 0.0}, "lr_scale must be > 0"),
        ("normface", {"temperature": 0.0}, "temperature must be > 0"),
        ("cosface", {"margin": -0.1}, "margin must be >= 0"),
        ("arcface", {"margin": 4.0}, "margin must be < pi"),
        ("triplet", {"margin": -1.0}, "margin must be >= 0"),
        ("triplet", {"reduction": "sum"}, "reduction must be one of mean, nonzero"),
        ("contrastive", {"neg_margin": -0.5}, "neg_margin must be >= 0"),
        ("nca", {"distance": "l1"}, "distance must be one of l2, cosine"),
        ("nca_memory", {"memory_size": 0}, "memory_size must be an integer >= 2"),
        ("nca_memory", {"memory_size": 10, "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ],
)
def test_bad_parameters_raise_value_errors_that_say_which(name, params, message) -> None:
    with pytest.raises(ValueError, match=message):
        build(name, **params)


@pytest.mark.parametrize(
    ("num_classes", "embedding_dim", "message"),
    [(1, 5, "num_classes must be an integer >= 2"), (4, 0, "embedding_dim must be an integer")],
)
def test_bad_sizes_raise(num_classes: int, embedding_dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losses.build("nca", num_classes=num_classes, embedding_dim=embedding_dim)


@pytest.mark.parametrize(
    ("init", "dim", "message"),
    [("orthogonal", 3, "num_classes <= embedding_dim"), ("simplex", 2, "embedding_dim \\+ 1")],
)
def test_anchor_init_needs_enough_dimensions(init: str, dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losses.build("hal", num_classes=4, embedding_dim=dim, init=init)


@pytest.mark.parametrize("name", losses.available())
@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (torch.randn(3, 5), torch.tensor([0, 1, 4]), r"labels must be in \[0, 4\)"),
        (torch.randn(3, 5), torch.tensor([0, -1, 2]), r"labels must be in \[0, 4\)"),
        # F.cross_entropy's default ignore index, which aten's NLL kernels skip silently (the
        # HAL family checks labels through those kernels on CPU: losses/kernels_cosine.py)
        (torch.randn(3, 5), torch.tensor([0, -100, 2]), r"labels must be in \[0, 4\)"),
        (torch.randn(3, 5), torch.tensor([0.0, 1.0, 2.0]), "labels must be an integer tensor"),
        (torch.randn(3, 5), torch.tensor([0, 1]), "labels must have shape \\[3\\]"),
        (torch.randn(3, 5), torch.tensor([[0, 1, 2]]), "labels must have shape \\[3\\]"),
        (torch.randn(5), torch.tensor([0]), "embeddings must have shape \\[B, 5\\]"),
        (torch.randn(3, 5, 1), torch.tensor([0, 1, 2]), "embeddings must have shape"),
        (torch.randn(3, 6), torch.tensor([0, 1, 2]), "embeddings must have shape \\[B, 5\\]"),
        (torch.randn(0, 5), torch.tensor([], dtype=torch.long), "empty batch"),
        (
            torch.ones(3, 5, dtype=torch.long),
            torch.tensor([0, 1, 2]),
            "embeddings must be a floating-point",
        ),
    ],
)
def test_bad_inputs_raise_value_errors(name, embeddings, labels, message) -> None:
    loss = build(name, memory_size=10) if name == "nca_memory" else build(name)
    with pytest.raises(ValueError, match=f"{name}: {message}"):
        loss(embeddings, labels, torch.arange(len(labels)))


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (None, "needs indices"),
        (torch.tensor([0, 1]), "integer tensor of shape \\[B\\]"),
        (torch.tensor([0.0, 1.0, 2.0]), "integer tensor of shape \\[B\\]"),
        (torch.tensor([0, 1, 10]), r"indices must be in \[0, 10\)"),
    ],
)
def test_nca_memory_checks_indices(indices, message: str) -> None:
    loss = build("nca_memory", memory_size=10)
    with pytest.raises(ValueError, match=message):
        loss(torch.randn(3, 5), torch.tensor([0, 1, 2]), indices)


@pytest.mark.parametrize("bad", [-100, -1, 4, 2**40])
def test_hal_large_batch_node_rejects_out_of_range_labels(bad: int) -> None:
    """HAL's large-batch path (losses/kernels_cosine.py) checks labels in its own NLL kernel."""
    from halbench.losses.kernels_cosine import FUSED_MIN_ELEMENTS

    batch = FUSED_MIN_ELEMENTS // 5 + 1  # B * d past the threshold
    labels = torch.randint(0, 4, (batch,))
    labels[-1] = bad
    with pytest.raises(
        ValueError, match=rf"hal: labels must be in \[0, 4\), got values in \[.*{bad}"
    ):
        build("hal")(torch.randn(batch, 5), labels)


def test_labels_on_another_device_are_rejected() -> None:
    labels = torch.tensor([0, 1, 2], device="meta")
    with pytest.raises(ValueError, match="nca: labels are on meta, embeddings on cpu"):
        build("nca")(torch.randn(3, 5), labels)


def test_int32_labels_are_accepted() -> None:
    x = torch.randn(6, 5)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = build("nca")
    assert loss(x, y.int()).item() == loss(x, y).item()


def test_pml_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def missing(name: str, *args, **kwargs):
        if name.startswith("pytorch_metric_learning"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ValueError, match="pip install pytorch-metric-learning"):
        build("pml:NCALoss")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("pml:", "expected pml:<ClassName>"),
        ("pml:NCALoss:softmax_scale", "expected key=value, got 'softmax_scale'"),
        ("pml:NCALoss:=3", "expected key=value"),
    ],
)
def test_pml_name_syntax_errors(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(name)


def test_normface_names_temperature_when_given_hals_scale() -> None:
    with pytest.raises(ValueError, match="'scale' is 1/temperature; set temperature"):
        losses.build("normface", num_classes=4, embedding_dim=8, scale=16.0)


# ----- KNNLoss.skip_host_reads: the trainer's calls read no device value ----------------------


@pytest.mark.parametrize("size", [16, 4096], ids=["small", "fused"])
@pytest.mark.parametrize("name", losses.available())
def test_skip_host_reads_leaves_calls_without_a_host_read(name: str, size: int) -> None:
    """Forward and backward, counted as on a GPU (HostSyncCounter): the default calls of the
    hal family read the finite check (and, on CPU, the NLL's total weight); these read none."""
    from halbench.probes.torch_compat import HostSyncCounter

    dim = 64  # 4096 x 64 takes the CPU's fused node in kernels_cosine.py
    loss = losses.build(name, num_classes=4, embedding_dim=dim, memory_size=size)
    labels = torch.arange(size) % 4
    loss.skip_host_reads(labels)
    x = torch.randn(size, dim, requires_grad=True)
    with HostSyncCounter() as counter:
        value = loss(x, labels, torch.arange(size))
        value.backward()
    assert dict(counter.counts) == {}
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_skip_host_reads_checks_the_labels_it_is_given_once() -> None:
    loss = build("hal")
    with pytest.raises(ValueError, match=r"hal: labels must be in \[0, 4\), got values in \[0, 4"):
        loss.skip_host_reads(torch.tensor([0, 4]))
    assert loss.host_reads
    loss.skip_host_reads(torch.tensor([0, 3]))
    assert not loss.host_reads

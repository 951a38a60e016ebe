"""Plug-in: any pytorch-metric-learning loss as a KNNLoss, `pml:<ClassName>[:key=value,...]`.

pytorch-metric-learning is an optional extra. Its learnable parameters (proxies, W) are
submodule parameters, so the trainer's optimizer picks them up. Its analytic cost is unknown:
`flops()` raises NotImplementedError and the probes report measured counts only.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import torch
from torch import Tensor, nn

from halbench.checks import check_int, check_nonnegative, check_positive, check_real, short
from halbench.losses.base import KNNLoss
from halbench.registry import keyword_parameters

PML_PREFIX = "pml:"  # the one place the prefix is spelled (as timm's parse_model_name)

# Classes of the library that are building blocks or wrappers around another loss, not losses.
_NOT_LOSSES = {"MultipleLosses", "CrossBatchMemory", "SelfSupervisedLoss"}
# Integer params of pml losses are counts that size tensors (bins, centers per class, ...).
MAX_PML_COUNT = 10_000
# L-Softmax expands cos(m*theta) into m/2 + 1 binomial terms, built as a Python list at
# construction and a [B, C, m/2] tensor per call: margin=1e9 allocated 6 GB. Papers use 1-4.
MAX_LARGE_MARGIN = 32


def is_pml(name: str) -> bool:
    """Whether `name` names a pytorch-metric-learning loss (`pml:<Class>[:key=value,...]`)."""
    return name.startswith(PML_PREFIX)


def parse_pml_name(name: str) -> tuple[str, dict[str, Any]]:
    """'pml:Class:a=1,b=x' -> ('Class', {'a': 1, 'b': 'x'}); values are int, float, bool,
    none or strings."""
    class_name, _, spec = name.removeprefix(PML_PREFIX).partition(":")
    if not class_name.isidentifier():
        raise ValueError(f"loss {short(name)}: expected pml:<ClassName>[:key=value,...]")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"loss {short(name)}: expected key=value, got {short(item)}")
        if key in params:
            raise ValueError(f"loss {short(name)}: parameter {key} given twice")
        params[key] = _parse_value(value.strip())
    return class_name, params


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def build_pml(name: str, *, num_classes: int, embedding_dim: int, **params: Any) -> PMLLoss:
    """Build `pml:<ClassName>[:key=value,...]`; suite params are merged with the name's."""
    class_name, named = parse_pml_name(name)
    overlap = sorted(set(named) & set(params))
    if overlap:
        raise ValueError(f"loss {short(name)}: parameter {overlap[0]} given twice")
    try:
        pml_losses = importlib.import_module("pytorch_metric_learning.losses")
    except ImportError:
        raise ValueError(
            f"loss {short(name)} needs the optional extra pytorch-metric-learning "
            "(pip install pytorch-metric-learning)"
        ) from None
    cls = getattr(pml_losses, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        known = [n for n, obj in vars(pml_losses).items() if isinstance(obj, type)]
        close = difflib.get_close_matches(class_name, known, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(
            f"loss {short(name)}: pytorch-metric-learning has no loss {class_name}{hint}"
        )
    if not _is_loss(class_name, cls):
        raise ValueError(f"loss {short(name)}: {class_name} is a base class or wrapper, not a loss")
    accepted = keyword_parameters(cls)
    kwargs = {**named, **params}
    settable = [k for k in accepted if k not in ("num_classes", "embedding_size")]
    for key, value in kwargs.items():
        if key not in settable:
            close = difflib.get_close_matches(key, settable, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"loss {short(name)}: unknown parameter '{key[:40]}'; expected one of: "
                f"{', '.join(settable) or '(none)'}{hint}"
            )
        _check_value(name, key, value, large_margin=class_name in _LARGE_MARGIN_CLASSES)
    if "num_classes" in accepted:
        kwargs["num_classes"] = num_classes
    if "embedding_size" in accepted:
        kwargs["embedding_size"] = embedding_dim
    try:
        inner = cls(**kwargs)
    except (TypeError, AssertionError, ValueError) as error:
        raise ValueError(f"loss {short(name)}: {error or 'invalid parameters'}") from None
    loss = PMLLoss(num_classes, embedding_dim, inner=inner, name=name)
    _check_on_a_batch(loss)
    return loss


# What a failed test call may raise, beyond ValueError: the library checks little.
_CALL_ERRORS = (TypeError, ArithmeticError, RuntimeError, AssertionError, IndexError)


def _check_on_a_batch(loss: PMLLoss) -> None:
    """One call on 8 random samples: the library checks little at construction, so a bad
    parameter would otherwise surface only in the first training step."""
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(8, loss.embedding_dim, generator=gen)
    labels = torch.arange(8) % min(loss.num_classes, 4)
    try:
        # fork_rng: a loss that draws random numbers must not shift the trial's global RNG.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            value = loss(embeddings, labels)
    except _CALL_ERRORS as error:
        raise ValueError(f"loss {short(loss.name)}: {error or type(error).__name__}") from None
    if not torch.isfinite(value).all():
        raise ValueError(
            f"loss {short(loss.name)}: not finite on a test batch (check its parameters)"
        )


def _is_loss(class_name: str, cls: type) -> bool:
    """A loss class of the library, not a base class, mixin or wrapper around another loss."""
    return (
        issubclass(cls, nn.Module)
        and class_name not in _NOT_LOSSES
        and not class_name.startswith(("Base", "Generic"))
        and not class_name.endswith("Mixin")
    )


def pml_names() -> list[str]:
    """`pml:<ClassName>` for every loss of pytorch-metric-learning, sorted; [] without it."""
    try:
        pml_losses = importlib.import_module("pytorch_metric_learning.losses")
    except ImportError:
        return []
    return sorted(
        PML_PREFIX + n
        for n, obj in vars(pml_losses).items()
        if isinstance(obj, type) and _is_loss(n, obj)
    )


def pml_parameters(name: str) -> dict[str, Any]:
    """The constructor parameters of `pml:<ClassName>` with their defaults (sizes excluded:
    halbench sets num_classes and embedding_size)."""
    class_name, _ = parse_pml_name(name)
    try:
        cls = getattr(importlib.import_module("pytorch_metric_learning.losses"), class_name)
    except (ImportError, AttributeError):
        raise ValueError(f"loss {short(name)}: not a pytorch-metric-learning loss") from None
    params = keyword_parameters(cls)
    return {k: v for k, v in params.items() if k not in ("num_classes", "embedding_size")}


_LARGE_MARGIN_CLASSES = {"LargeMarginSoftmaxLoss", "SphereFaceLoss"}


def _check_value(name: str, key: str, value: Any, *, large_margin: bool) -> None:
    """Numbers finite, counts bounded, margins >= 0, temperatures and scales > 0.

    The library checks almost nothing at construction: `temperature=0` or `pos_margin=abc`
    fail (or give NaN) only in the first training step.
    """
    where = f"loss {short(name)}: {key}"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return  # strings reach the constructor; a test forward call catches misuse
    if not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, string or bool, got {short(value)}")
    check_real(where, value)
    if large_margin and key == "margin":
        check_int(where, int(value), minimum=1, maximum=MAX_LARGE_MARGIN)
        check_positive(where, value)
    elif isinstance(value, int):
        check_int(where, value, minimum=-MAX_PML_COUNT, maximum=MAX_PML_COUNT)
    if "margin" in key.lower():
        check_nonnegative(where, value)
    if "temperature" in key.lower() or "scale" in key.lower():
        check_positive(where, value)


class PMLLoss(KNNLoss):
    """Wraps a pytorch-metric-learning loss module behind the KNNLoss contract.

    metric: cosine when the loss's distance normalizes embeddings (the library's default),
    else l2. Anchors: `proxies` [C, d] or `W` [d, C] when the loss has them.
    """

    def __init__(self, num_classes: int, embedding_dim: int, *, inner: nn.Module, name: str):
        super().__init__(num_classes, embedding_dim)
        self.inner = inner
        self.name = name  # type: ignore[misc]  # per instance: the full pml:... spec
        distance = getattr(inner, "distance", None)
        self.metric = "cosine" if getattr(distance, "normalize_embeddings", True) else "l2"
        self.has_anchors = self._class_vectors() is not None  # type: ignore[misc]

    def _class_vectors(self) -> Tensor | None:
        proxies = getattr(self.inner, "proxies", None)
        if isinstance(proxies, Tensor) and proxies.shape == (self.num_classes, self.embedding_dim):
            return proxies
        weight = getattr(self.inner, "W", None)
        if isinstance(weight, Tensor) and weight.shape == (self.embedding_dim, self.num_classes):
            return weight.T
        return None

    def anchors(self) -> Tensor | None:
        vectors = self._class_vectors()
        return None if vectors is None else vectors.detach()

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        return self.inner(embeddings, labels)

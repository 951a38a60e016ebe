"""Plug-in: any pytorch-metric-learning loss as a KNNLoss, `pml:<ClassName>[:key=value,...]`.

pytorch-metric-learning is an optional extra. Its learnable parameters (proxies, W) are
submodule parameters, so the trainer's optimizer picks them up. Its analytic cost is unknown:
`flops()` raises NotImplementedError and the probes report measured counts only.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from torch import Tensor, nn

from halbench.checks import check_int, check_nonnegative, check_positive, check_real, short
from halbench.losses.base import KNNLoss

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
    if (
        class_name in _NOT_LOSSES
        or class_name.startswith(("Base", "Generic"))
        or (class_name.endswith("Mixin"))
    ):
        raise ValueError(f"loss {short(name)}: {class_name} is a base class or wrapper, not a loss")
    accepted = _constructor_parameters(cls)
    kwargs = {**named, **params}
    for key, value in kwargs.items():
        _check_value(name, key, value, large_margin=class_name in _LARGE_MARGIN_CLASSES)
    if "num_classes" in accepted:
        kwargs["num_classes"] = num_classes
    if "embedding_size" in accepted:
        kwargs["embedding_size"] = embedding_dim
    try:
        inner = cls(**kwargs)
    except (TypeError, AssertionError, ValueError) as error:
        raise ValueError(f"loss {short(name)}: {error or 'invalid parameters'}") from None
    return PMLLoss(num_classes, embedding_dim, inner=inner, name=name)


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


def _constructor_parameters(cls: type) -> set[str]:
    """Named constructor parameters up the hierarchy, while constructors forward *args/**kw."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            break
    return names


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

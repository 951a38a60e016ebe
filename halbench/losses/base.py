"""The KNNLoss base class, the loss registry, parameter checks and the readable helpers.

FLOPs: every `flops()` states the FLOPs of its loss's readable formula with the formula
helpers of halbench/probes/flop_rules.py, the rulebook the counters apply (docs/losses.md,
docs/probes.md). Fast paths (losses/kernels*.py) may differ in lower-order terms only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from halbench.checks import (  # noqa: F401  (re-exported for the loss files)
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_nonnegative,
    check_positive,
    check_real,
)
from halbench.registry import Registry

# Norms are clamped here before dividing, so a zero embedding gives a zero direction, not NaN.
EPS = 1e-12

METRICS = ("cosine", "l2")

# impl="reference" runs a loss's readable formula, "fast" its kernels (losses/kernels*.py).
IMPLS = ("reference", "fast")

# The fast kernels' FLOPs may differ from flops() (the readable formula) in lower-order terms
# by at most this fraction of the total at the sizes tests/losses/test_flops.py checks.
FLOP_TOLERANCE = 0.05


class KNNLoss(nn.Module):
    """A loss whose embeddings are meant to be searched with k-NN.

    The contract: `forward` (checks inputs, calls `compute`), `compute` (the loss itself),
    `anchors`, `flops` and `param_groups`; attributes `name`, `metric`, `has_anchors`,
    `needs_memory_size`, `impl` and `host_reads`. `compute` is the readable formula of its
    file; `forward` runs it with the formula functions marked `@fast_path(kernel)` switched to
    their kernels (losses/kernels*.py) when impl="fast"; both give the same value and
    gradient. `metric` is what k-NN should use; losses with a distance option set it per
    instance, so read it from the built loss.
    """

    name: ClassVar[str] = ""
    metric: str = "l2"
    has_anchors: ClassVar[bool] = False
    # build() passes memory_size (the number of training samples) only to losses that set this.
    needs_memory_size: ClassVar[bool] = False

    def __init__(self, num_classes: int, embedding_dim: int, *, impl: str = "fast") -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
        self.impl = check_choice("impl", impl, IMPLS)
        self.lr_scale = 1.0
        # Whether a call may read a device value on the host (a sync on GPU): see skip_host_reads.
        self.host_reads = True

    @property
    def fast(self) -> bool:
        """Whether `compute` runs the kernels (impl="fast")."""
        return self.impl == "fast"

    def skip_host_reads(self, labels: Tensor) -> None:
        """Checks `labels`, every label later calls will see (a training split's), once, and
        from then on makes each call read no device value on the host, so that a GPU training
        step never waits for the device: no per-call label range check (nor, for losses with
        a memory bank, index range check: the caller passes positions in the split the bank
        was sized for), and the kernels take their paths without a finite check (the same
        value and gradient; losses/kernels_cosine.py). Used by the trainer (halbench/trial).
        """
        self.check_label_range(labels)
        self.host_reads = False

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Scalar loss of a batch, by the formulas or their kernels (`impl`); raises ValueError
        on malformed inputs."""
        labels = self._check_inputs(embeddings, labels)
        token = _KERNELS.set(SYNC_FREE if not self.host_reads and self.fast else self.fast)
        try:
            return self.compute(embeddings, labels, indices)
        except LabelRangeError:  # a kernel that checks labels itself found one out of range
            self.check_label_range(labels)  # the error that names the loss and the range
            raise
        finally:
            _KERNELS.reset(token)

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        """The loss itself, on checked inputs (labels int64 and in [0, C))."""
        raise NotImplementedError

    def anchors(self) -> Tensor | None:
        """Class anchors/proxies [C, d] for nearest-anchor accuracy, or None."""
        return None

    def flops(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        """Analytic FLOPs of one forward call of the readable formula: {"matmul", "total"}.

        total includes forward's label check (aminmax: 2 per sample). The fast kernels run
        the same matmul and lower-order terms within FLOP_TOLERANCE of total (docs/probes.md).
        The count is the same on every device.
        """
        cost = self.cost(batch_size, embedding_dim, num_classes, memory_size)
        return {"matmul": cost["matmul"], "total": cost["total"] + 2 * batch_size}

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int
    ) -> dict[str, int]:
        """FLOPs of the readable `compute` (the flop_rules helpers)."""
        raise NotImplementedError(f"loss '{self.name}' has no analytic cost formula")

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups for this loss's own parameters, at lr * lr_scale."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr * self.lr_scale}] if params else []

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"

    def _check_inputs(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        # Runs on every call, so each test is one cheap attribute read where it can be: at the
        # grid's small sizes these checks cost as much as a few loss ops.
        if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point():
            raise ValueError(f"{self.name}: embeddings must be a floating-point tensor")
        shape = embeddings.shape
        if len(shape) != 2 or shape[1] != self.embedding_dim:
            raise ValueError(
                f"{self.name}: embeddings must have shape [B, {self.embedding_dim}], "
                f"got {list(shape)}"
            )
        if shape[0] == 0:
            raise ValueError(f"{self.name}: empty batch (B = 0)")
        if not isinstance(labels, Tensor) or labels.dtype not in _INTEGER_DTYPES:
            raise ValueError(f"{self.name}: labels must be an integer tensor")
        if labels.device != embeddings.device:
            raise ValueError(
                f"{self.name}: labels are on {labels.device}, embeddings on {embeddings.device}"
            )
        if labels.shape != shape[:1]:
            raise ValueError(
                f"{self.name}: labels must have shape [{shape[0]}] to match the "
                f"embeddings, got {list(labels.shape)}"
            )
        if self.host_reads and not (self.fast and self.kernel_checks_labels(labels.device.type)):
            self.check_label_range(labels)
        return labels if labels.dtype == torch.int64 else labels.long()

    def kernel_checks_labels(self, device_type: str) -> bool:
        """Whether this loss's kernels reject labels outside [0, C) themselves (raising
        LabelRangeError), which spares forward its reduction and host read."""
        return False

    def check_label_range(self, labels: Tensor) -> None:
        """ValueError unless every label is in [0, C)."""
        # One reduction and one host sync per call; cheap next to a training step, and it
        # turns silent CUDA index errors into a readable message. (Two item() reads cost less
        # than stacking the pair into one tensor for a single read.)
        low, high = torch.aminmax(labels)
        low, high = low.item(), high.item()
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"{self.name}: labels must be in [0, {self.num_classes}), got values in "
                f"[{low}, {high}]"
            )


# Label dtypes: the signed and unsigned integers (bool, floating and complex are rejected).
_INTEGER_DTYPES = frozenset(
    {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
    | {getattr(torch, f"uint{bits}") for bits in (16, 32, 64) if hasattr(torch, f"uint{bits}")}
)


class LabelRangeError(ValueError):
    """A label outside [0, C), found by a kernel that checks labels itself."""


# What the formula functions marked @fast_path run: False the formula, True the kernels,
# SYNC_FREE the kernels on their paths that read no device value on the host
# (KNNLoss.skip_host_reads). Set by KNNLoss.forward for the duration of one call (a context
# variable, so threads do not share it); one variable, because each call pays for setting it.
SYNC_FREE = "sync-free"
_KERNELS: ContextVar[bool | str] = ContextVar("halbench_kernels", default=False)


def host_reads_allowed() -> bool:
    """Whether a kernel running now may read a device value on the host (a sync on GPU)."""
    return _KERNELS.get() is not SYNC_FREE


Fn = TypeVar("Fn", bound=Callable[..., Any])


def fast_path(kernel: Callable[..., Any]) -> Callable[[Fn], Fn]:
    """Decorator for a readable formula function: inside the forward of a loss with
    impl="fast", calls run `kernel` (same signature, same value and gradient) instead.

    Called anywhere else, the function is its readable self. `.reference` and `.kernel` name
    the two for the equivalence tests (tests/losses/test_kernels.py).
    """

    def decorator(formula: Fn) -> Fn:
        @functools.wraps(formula)
        def dispatch(*args: Any, **kwargs: Any) -> Any:
            return (dispatch.kernel if _KERNELS.get() else formula)(*args, **kwargs)  # type: ignore[attr-defined]

        dispatch.reference = formula  # type: ignore[attr-defined]
        dispatch.kernel = kernel  # type: ignore[attr-defined]
        return dispatch  # type: ignore[return-value]

    return decorator


L = TypeVar("L", bound=type[KNNLoss])

LOSSES: Registry[type[KNNLoss]] = Registry("loss")


def register_loss(name: str) -> Callable[[L], L]:
    """Class decorator: registers a KNNLoss subclass under `name` and sets its `name`."""

    def decorator(cls: L) -> L:
        cls.name = name
        LOSSES.register(name)(cls)
        return cls

    return decorator


# ----- readable helpers shared by the loss files --------------------------------------------


def as_float32(logits: Tensor) -> Tensor:
    """Upcast half/bfloat16 logits: softmax statistics need fp32 range and precision."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def lowest(dtype: torch.dtype) -> float:
    """The most negative finite value of a float dtype (the mask value for logits)."""
    return torch.finfo(dtype).min


def normalize(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (F.normalize with a clamped norm)."""
    return F.normalize(x, dim=1, eps=EPS)


def squared_norms(x: Tensor) -> Tensor:
    """||x_i||^2 per row, [m]."""
    return (x * x).sum(dim=1)

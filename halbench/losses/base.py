"""The KNNLoss base class, the loss registry, parameter checks and shared numerics.

FLOP rules shared by every `flops()` formula (docs/losses.md lists them per loss): a matmul
[m, k] x [k, n] is 2mkn; every elementwise arithmetic op or comparison is 1 per output element;
a reduction (sum, max, any) is 1 per input element; addmm is its matmul plus, per output
element, 1 for the add and 1 for each of alpha and beta that is not 1; selections and copies (where,
masked_fill, fill_diagonal_, indexing, gather/scatter, casts) are 0. Composite ops count their
parts (see the *_flops helpers).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
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


class KNNLoss(nn.Module):
    """A loss whose embeddings are meant to be searched with k-NN.

    Subclasses implement `compute` (inputs already checked) and `cost`. Learnable parameters
    (anchors, proxies) are ordinary nn.Parameters; `anchors()` returns one vector per class when
    the loss has them. `metric` is what k-NN should use; losses with a distance option set it per
    instance, so read it from the built loss.
    """

    name: ClassVar[str] = ""
    metric: str = "l2"
    has_anchors: ClassVar[bool] = False
    # build() passes memory_size (the number of training samples) only to losses that set this.
    needs_memory_size: ClassVar[bool] = False

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
        self.lr_scale = 1.0

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Scalar loss of a batch; raises ValueError on malformed inputs."""
        labels = self._check_inputs(embeddings, labels)
        return self.compute(embeddings, labels, indices)

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        """The loss itself, on checked inputs (labels are int64, and in range unless
        `checks_label_range` says that compute checks that itself)."""
        raise NotImplementedError

    def checks_label_range(self, device_type: str) -> bool:
        """Whether `compute` rejects labels outside [0, C) itself on this device type, raising
        `LabelRangeError`; forward then skips its own range check (a reduction and a read)."""
        return False

    def anchors(self) -> Tensor | None:
        """Class anchors/proxies [C, d] for nearest-anchor accuracy, or None."""
        return None

    def flops(
        self,
        batch_size: int,
        embedding_dim: int,
        num_classes: int,
        memory_size: int = 0,
        *,
        device_type: str = "cpu",
    ) -> dict[str, int]:
        """Analytic FLOPs of one forward call on a device type: {"matmul": ..., "total": ...}.

        total includes forward's label check (aminmax: 2 per sample) where it runs.
        """
        cost = self.device_cost(batch_size, embedding_dim, num_classes, memory_size, device_type)
        check = 0 if self.checks_label_range(device_type) else 2 * batch_size
        return {"matmul": cost["matmul"], "total": cost["total"] + check}

    def device_cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int, device: str
    ) -> dict[str, int]:
        """FLOPs of `compute` on a device type: `cost`, unless the device picks another path."""
        return self.cost(batch_size, embedding_dim, num_classes, memory_size)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int
    ) -> dict[str, int]:
        """FLOPs of `compute` (see the module docstring for the rules)."""
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
        if not self.checks_label_range(labels.device.type):
            self.check_label_range(labels)
        return labels if labels.dtype == torch.int64 else labels.long()

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


class LabelRangeError(ValueError):
    """A label outside [0, C), found by a loss's own computation (`checks_label_range`)."""


# Label dtypes: the signed and unsigned integers (bool, floating and complex are rejected).
_INTEGER_DTYPES = frozenset(
    {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
    | {getattr(torch, f"uint{bits}") for bits in (16, 32, 64) if hasattr(torch, f"uint{bits}")}
)


L = TypeVar("L", bound=type[KNNLoss])

LOSSES: Registry[type[KNNLoss]] = Registry("loss")


def register_loss(name: str) -> Callable[[L], L]:
    """Class decorator: registers a KNNLoss subclass under `name` and sets its `name`."""

    def decorator(cls: L) -> L:
        cls.name = name
        LOSSES.register(name)(cls)
        return cls

    return decorator


# ----- shared numerics, each with its cost formula ------------------------------------------


# Entering torch.autocast costs about as much as a small op, so it is skipped when autocast is
# already off (the fp32 case).
_NO_CONTEXT = nullcontext()


def no_autocast(x: Tensor) -> AbstractContextManager[Any]:
    """Autocast off inside hand-written autograd functions: they compute in their inputs' dtype
    and their backward (which runs outside autocast) must see the same dtypes as forward."""
    if not torch.is_autocast_enabled(x.device.type):
        return _NO_CONTEXT
    return torch.autocast(x.device.type, enabled=False)


def as_float32(logits: Tensor) -> Tensor:
    """Upcast half/bfloat16 logits: softmax statistics need fp32 range and precision."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def lowest(dtype: torch.dtype) -> float:
    """The most negative finite value of a float dtype (the mask value for logits)."""
    return torch.finfo(dtype).min


def normalize(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (F.normalize with a clamped norm)."""
    return F.normalize(x, dim=1, eps=EPS)


def normalize_flops(m: int, n: int) -> int:
    """vector_norm (2 per element, sqrt per row), clamp per row, divide per element."""
    return 3 * m * n + 2 * m


def weight_norm_flops(m: int, n: int) -> int:
    """torch._weight_norm over rows, v * g / |v|: |v| (2 per element, a root per row), g / |v|
    per row, the product per element."""
    return 3 * m * n + 2 * m


def addmm_flops(m: int, k: int, n: int, *, alpha: float = 1.0, beta: float = 1.0) -> int:
    """beta * input + alpha * ([m, k] x [k, n]): the product, the add, each scaling not by 1."""
    return 2 * m * k * n + m * n * (1 + (alpha != 1) + (beta != 1))


def squared_norms(x: Tensor) -> Tensor:
    """||x_i||^2 per row, [m]."""
    return (x * x).sum(dim=1)


def squared_norms_flops(m: int, n: int) -> int:
    """Square and sum per element."""
    return 2 * m * n


# On CPU, log_softmax over a short last dimension runs one row at a time: for [B, 10] logits it
# is ~20x slower than over the first dimension of the same values stored class-major [10, B],
# where the kernel vectorizes across the batch (benchmarks/loss_calls.py, `floor_cm`). Past a
# few dozen classes rows are long enough and batch-major wins again. GPU kernels do not care.
CLASS_MAJOR_MAX_CLASSES = 32


def class_major(device: torch.device, num_classes: int) -> bool:
    """Whether softmax logits [B, C] are best stored transposed, as [C, B]."""
    return device.type == "cpu" and num_classes <= CLASS_MAJOR_MAX_CLASSES


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy of [B, C] logits, computed in fp32 for low-precision logits.

    Where `class_major` says so, the logits are copied to [C, B] and F.cross_entropy takes them
    as one sample with B positions ([1, C, B]); the copy costs far less than it saves.
    """
    if class_major(logits.device, logits.shape[1]):
        return class_major_cross_entropy(logits.T.contiguous(), labels)
    return F.cross_entropy(as_float32(logits), labels)


def class_major_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy of logits stored class-major, [C, B] (fp32 statistics).

    F.cross_entropy takes them as one sample with B positions, [1, C, B].
    """
    return F.cross_entropy(as_float32(logits).unsqueeze(0), labels.unsqueeze(0))


def cross_entropy_flops(m: int, n: int) -> int:
    """log_softmax (max, sub, exp, sum, sub per element; log per row) + mean NLL (per row)."""
    return 5 * m * n + 2 * m


# exp(-80) = 2e-35: terms clamped up to it change a sum that is >= 1 by far less than float32's
# resolution, and clamping keeps exp off its slow path for underflowing arguments (about 10x
# slower on CPU), which unclamped masked or distant entries would take.
EXP_FLOOR = -80.0


class _NeighbourNLL(torch.autograd.Function):
    """Per row: -log sum_{j pos} softmax_j = lse(all) - lse(positives), and whether the row has a
    positive. Each logsumexp is shifted by its own maximum, so neither overflows nor loses the
    positives to underflow; the backward is softmax(all) - softmax(positives), from the exps
    saved in forward.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        top = logits.amax(dim=1, keepdim=True)
        exp_all = (logits - top).clamp_min_(EXP_FLOOR).exp_()
        top_positive = torch.where(positive, logits, lowest(logits.dtype)).amax(dim=1, keepdim=True)
        exp_positive = (logits - top_positive).clamp_(EXP_FLOOR, 0.0).exp_().mul_(positive)
        has_positive = (top_positive > lowest(logits.dtype)).squeeze(1)
        # Each sum holds its maximum's term exp(0) = 1, so >= 1; a row without a positive sums
        # to 0 and is set to 1 so that nothing below divides by or takes the log of 0.
        sum_all = exp_all.sum(dim=1, keepdim=True)
        sum_positive = exp_positive.sum(dim=1, keepdim=True).clamp_min_(1.0)
        per_row = ((top - top_positive) + (sum_all.log() - sum_positive.log())).squeeze(1)
        ctx.save_for_backward(exp_all, sum_all, exp_positive, sum_positive)
        ctx.mark_non_differentiable(has_positive)
        return per_row, has_positive

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor, None]:
        exp_all, sum_all, exp_positive, sum_positive = ctx.saved_tensors
        grad = grad.unsqueeze(1)
        dlogits = (exp_all * (grad / sum_all)).addcmul_(exp_positive, grad / sum_positive, value=-1)
        return dlogits, None


def neighbour_nll(logits: Tensor, positive: Tensor) -> Tensor:
    """NCA loss from logits: mean over rows with a positive of -log sum_{j pos} softmax_ij.

    Entries that are not candidates at all (self-pairs, empty memory slots) must already hold
    `lowest(dtype)`: a finite mask keeps every step free of inf - inf. A row without a positive
    gives a finite value that `where` drops with a zero gradient, so a batch without any positive
    gives 0 with a gradient, not NaN.
    """
    per_row, has_positive = _NeighbourNLL.apply(as_float32(logits), positive)
    per_row = torch.where(has_positive, per_row, 0.0)
    return per_row.sum() / has_positive.sum().clamp_min(1)


def neighbour_nll_flops(m: int, n: int) -> int:
    """all: max, sub, clamp, exp, sum (5mn); positives: max, sub, clamp, exp, mask product,
    sum (6mn); per row: has-positive test, clamp, two logs, three subtractions and additions,
    sum, count (9m); clamp and divide (2)."""
    return 11 * m * n + 9 * m + 2


class _GramScores(torch.autograd.Function):
    """S = alpha x x^T + beta n with n_ij = ||x_j||^2, or ||x_i||^2 + ||x_j||^2 (both_sides).

    Autograd through addmm(x, x.T) runs two B x B x d products backward, one per operand; as S
    uses x on both sides, the symmetrized gradient gives dx with one. (For d < 64 on CPU, two
    products would cost less than the strided transpose-add; the grid's d is 64 and up.)
    `diagonal` (if not None) fills S_ii with a constant, whose gradient is zero.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, alpha: float, beta: float, both_sides: bool, diagonal: float | None
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha, ctx.beta, ctx.both_sides, ctx.diagonal = alpha, beta, both_sides, diagonal
        with no_autocast(x):
            if beta == 0:
                scores = torch.mm(x, x.T).mul_(alpha)
            else:
                sq = squared_norms(x)
                bias = sq.unsqueeze(1) + sq.unsqueeze(0) if both_sides else sq
                scores = torch.addmm(bias, x, x.T, beta=beta, alpha=alpha)
        if diagonal is not None:
            scores.fill_diagonal_(diagonal)
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        symmetric = grad + grad.T
        if ctx.diagonal is not None:
            symmetric.diagonal().zero_()
        dx = torch.mm(symmetric, x).mul_(ctx.alpha)
        if ctx.beta != 0:
            # d/dx_k of beta sum_ij g_ij ||x_j||^2 is 2 beta (sum_i g_ik) x_k; likewise rows.
            weight = grad.sum(dim=0)
            if ctx.both_sides:
                weight = weight + grad.sum(dim=1)
            if ctx.diagonal is not None:
                weight = weight - (2 if ctx.both_sides else 1) * grad.diagonal()
            dx.addcmul_(weight.unsqueeze(1), x, value=2 * ctx.beta)
        return dx, None, None, None, None


def gram_scores(
    x: Tensor,
    *,
    alpha: float,
    beta: float = 0.0,
    both_sides: bool = False,
    diagonal: float | None = None,
) -> Tensor:
    """alpha x x^T + beta ||x_j||^2 (+ beta ||x_i||^2 if both_sides) [B, B] from one matmul.

    FLOPs of the forward: beta = 0: matmul + B^2 (alpha); else squared norms (2Bd), the outer
    sum if both_sides (B^2), and addmm_flops(B, d, B, alpha=alpha, beta=beta).
    """
    return _GramScores.apply(x, alpha, beta, both_sides, diagonal)

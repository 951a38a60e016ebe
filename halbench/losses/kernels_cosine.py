"""Fast path of `anchor.cosine_cross_entropy` (HAL and the losses that are HAL with another scale,
ProxyNCA and NormFace, or a margin, CosFace and ArcFace): the mean cross-entropy of
scale * cos(x_i, w_c), the target logits optionally adjusted.

One public function, `cosine_cross_entropy`, with the readable formula's signature; inside it
two implementations, each for the regime where it is faster (benchmarks/loss_calls.py):
- small batches (B * d < FUSED_MIN_ELEMENTS, and always on GPU): a loss call is a few dozen
  small ops whose number of autograd nodes, not their arithmetic, sets its time. Both
  normalizations are torch's fused weight-norm kernel (`cosine_logits`), one native node each,
  and the cross-entropy is log_softmax and aten's NLL kernel: the backward is all native but
  for one guard (`_refuse_double_backward`).
- large batches on CPU: memory traffic sets the time, and materializing x / |x| [B, d] costs
  two extra passes over x each way. `_CosineCrossEntropy` divides the [B, C] logits by |x_i|
  instead and has a hand-written backward that adds one pass over x to a bare linear layer's.
Margin losses edit [B, C] logits, so they take the weight-norm logits and `kernels.cross_entropy`.
All are checked against autograd through F.normalize (tests/losses/test_kernels.py).
The private torch and aten calls of the loss zoo live here and in kernels.py only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from halbench.losses.base import (
    EPS,
    LabelRangeError,
    as_float32,
    host_reads_allowed,
    normalize,
)
from halbench.losses.kernels import class_major, cross_entropy, no_autocast

__all__ = ["LabelRangeError", "checks_labels", "cosine_cross_entropy"]


# adjust_target(logits [B, C], labels) -> logits with the target logit changed (a margin)
AdjustTarget = Callable[[Tensor, Tensor], Tensor]

# B * d from which, on CPU, the fused node replaces the weight-norm kernel. Forward+backward,
# C = 10, one thread of a 2-core VM, weight-norm time / fused time: 0.86 at B * d = 2^16
# (512 x 128), 0.90 to 1.07 at 2^17 (2048 x 64, 1024 x 128, 256 x 512), 1.24 to 1.42 at 2^18,
# 1.48 at 2^21 (4096 x 512: 9.8 ms against 6.6). At 2^17 (512 KiB of fp32 per [B, d] tensor)
# the arithmetic is a tie, but the weight-norm path holds three such tensors (x / |x|, its
# gradient, x's gradient) where a bare linear layer holds one, and glibc's default thresholds
# then serve them by mmap: 10 to 22 page faults per call against 0 to 2 for the fused node.
# The crossover moves with cache sizes and the allocator; either path is correct either side.
FUSED_MIN_ELEMENTS = 2**17


# Mean reduction and the ignore index for aten's NLL ops, called directly for their label check
# (checked_nll) and, in the fused node, so that backward gets dL/dlogits from two fused kernels.
_MEAN = 1
_IGNORE = -100
_NLL_2D = (torch.ops.aten.nll_loss2d_forward.default, torch.ops.aten.nll_loss2d_backward.default)
_NLL_1D = (torch.ops.aten.nll_loss_forward.default, torch.ops.aten.nll_loss_backward.default)
_WEIGHT_NORM_BACKWARD = torch.ops.aten._weight_norm_interface_backward.default


def uses_fused_node(device_type: str, batch_size: int, embedding_dim: int) -> bool:
    """Whether `cosine_cross_entropy` takes the fused node (large batches on CPU)."""
    return device_type == "cpu" and batch_size * embedding_dim >= FUSED_MIN_ELEMENTS


def checks_labels(device_type: str, adjust_target: AdjustTarget | None) -> bool:
    """Whether `cosine_cross_entropy` rejects labels outside [0, C) itself (LabelRangeError):
    on CPU, without a margin, its NLL kernels do; then forward skips its own range check."""
    return device_type == "cpu" and adjust_target is None


def cosine_cross_entropy(
    x: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: float,
    adjust_target: AdjustTarget | None = None,
) -> Tensor:
    """HAL's loss: mean cross-entropy of softmax_c(scale * cos(x_i, w_c)) at the labels, the
    logits passed through `adjust_target(logits, labels)` first when given (margins).

    The logits are stored class-major, [C, B], where kernels.py `class_major` says so. At
    B = 256 each line of Python here costs about a small op, hence the one device lookup and
    the fallback written out rather than shared with `with_clamped_fallback`. The fused node
    clamps both norms, so it needs no finite check.
    """
    if adjust_target is not None:  # margins edit [B, C] logits
        return with_clamped_fallback(
            x,
            weight,
            scale,
            False,
            lambda logits: cross_entropy(adjust_target(logits, labels), labels),
        )
    device = x.device
    layout = class_major(device, len(weight))
    if uses_fused_node(device.type, *x.shape):
        return _CosineCrossEntropy.apply(x, weight, labels, scale, layout)
    if host_reads_allowed():
        loss = _cross_entropy(cosine_logits(x, weight, scale, layout), labels, layout)
        if math.isfinite(loss.item()):  # see with_clamped_fallback
            return loss
    return _cross_entropy(clamped_cosine_logits(x, weight, scale, layout), labels, layout)


def _cross_entropy(logits: Tensor, labels: Tensor, class_major: bool) -> Tensor:
    """Mean softmax cross-entropy: log_softmax and aten's NLL kernel (see `checked_nll`)."""
    log_p = torch.log_softmax(as_float32(logits), dim=0 if class_major else 1)
    return checked_nll(log_p, labels, class_major)[0]


def checked_nll(log_p: Tensor, labels: Tensor, class_major: bool) -> tuple[Tensor, Tensor]:
    """Mean NLL of the labels under log-probabilities [C, B] (class_major) or [B, C], and its
    total weight (the number of labels counted), by aten's NLL kernels.

    On CPU these kernels reject every label outside [0, C) but their ignore index, and the total
    weight tells whether that one was present: so HAL needs no separate range check there
    (`checks_labels`), either way raising LabelRangeError. On GPU an out-of-range
    label is a device-side assert, so forward checks labels before any kernel sees them.
    """
    try:
        if class_major:  # one "image" of 1 x B positions: [1, C, 1, B]
            batch = log_p.shape[1]
            nll_input, target = log_p.view(1, -1, 1, batch), labels.view(1, 1, batch)
            loss, total_weight = _NLL_2D[0](nll_input, target, None, _MEAN, _IGNORE)
        else:
            loss, total_weight = _NLL_1D[0](log_p, labels, None, _MEAN, _IGNORE)
    except IndexError as error:  # "Target 12 is out of bounds."
        raise LabelRangeError(str(error)) from None
    # Without host reads (KNNLoss.skip_host_reads) the labels were checked before training.
    if log_p.device.type == "cpu" and host_reads_allowed() and total_weight.item() != len(labels):
        raise LabelRangeError(f"Target {_IGNORE} is out of bounds.")
    return loss, total_weight


def with_clamped_fallback(
    x: Tensor,
    weight: Tensor,
    scale: float,
    class_major: bool,
    loss_of: Callable[[Tensor], Tensor],
) -> Tensor:
    """loss_of(`cosine_logits`), or loss_of(`clamped_cosine_logits`) where that is not finite.

    The weight-norm kernel does not clamp |v|: a zero-norm row of x or w makes the loss NaN
    (the softmax and the mean see every row and every anchor), and then the clamped path gives
    F.normalize's answer. Non-finite inputs stay non-finite on either path. The check is one
    scalar read: free on CPU; on GPU it waits for the loss's few kernels, so a call that may
    not read the host (KNNLoss.skip_host_reads, the trainer's) takes the clamped path at once:
    a few more small kernels, queued without a wait.
    """
    if host_reads_allowed():
        loss = loss_of(cosine_logits(x, weight, scale, class_major))
        if math.isfinite(loss.item()):
            return loss
    return loss_of(clamped_cosine_logits(x, weight, scale, class_major))


def cosine_logits(x: Tensor, weight: Tensor, scale: float, class_major: bool) -> Tensor:
    """scale * cos(x_i, w_c) as [C, B] (class_major) or [B, C], by the weight-norm kernel.

    torch._weight_norm(v, g, 0) = v * g / |v| per row is what
    nn.utils.parametrizations.weight_norm runs: one node with a one-pass backward. The scale
    rides on the anchors' g. A zero row gives NaN (see `with_clamped_fallback`).
    """
    g = _column(len(weight), scale, weight.dtype, weight.device)
    anchors = torch._weight_norm(weight, g, 0)
    unit = torch._weight_norm(x, _column(len(x), 1.0, x.dtype, x.device), 0)
    logits = torch.mm(anchors, unit.T) if class_major else torch.mm(unit, anchors.T)
    if logits.grad_fn is not None:
        logits.grad_fn.register_prehook(_refuse_double_backward)
    return logits


def clamped_cosine_logits(x: Tensor, weight: Tensor, scale: float, class_major: bool) -> Tensor:
    """`cosine_logits` through F.normalize's clamped norms: a zero row gets a zero direction.

    Slower (more autograd nodes) but defined everywhere, and differentiable twice.
    """
    anchors, unit = normalize(weight) * scale, normalize(x)
    return torch.mm(anchors, unit.T) if class_major else torch.mm(unit, anchors.T)


def _refuse_double_backward(grad_outputs: tuple[Tensor | None, ...]) -> None:
    # Under create_graph the weight-norm kernel's backward switches to a "differentiable" form
    # whose second derivative is wrong (it fails gradgradcheck in torch 2.14); an error beats a
    # silently wrong gradient penalty. Grad mode is on during a backward only under create_graph.
    # This hook is the one piece of Python in the backward: about 14 us at B = 256 on CPU.
    if torch.is_grad_enabled():
        raise RuntimeError(
            "hal-family losses cannot be differentiated twice (create_graph=True): torch's "
            "weight-norm kernel, which computes their cosines, has a wrong second derivative"
        )


@functools.lru_cache(maxsize=64)
def _column(rows: int, value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A constant [rows, 1] column, the weight-norm kernel's g; never written to.

    Cached: two fresh g tensors per call cost about as much as two small ops (they are saved
    for backward and freed with the graph). Made outside inference mode so that a column first
    built under it can still be saved for a later backward.
    """
    with torch.inference_mode(False):
        return torch.full((rows, 1), value, dtype=dtype, device=device)


class _CosineCrossEntropy(torch.autograd.Function):
    """`cosine_cross_entropy` for large batches, as one node with a hand-written backward.

    The [C, B] logits are divided by |x_i| rather than x [B, d] being normalized, and the loss
    and dL/dlogits come from aten's NLL and log-softmax kernels. With G = dL/dlogits =
    (softmax - onehot) / B, P_ic = G_ic / |x_i| and a_c = scale w_c / |w_c|:
    dx_i = sum_c P_ic a_c - x_i sum_c P_ic logits_ic / |x_i|:
    beyond the two products of a bare linear layer, one pass over [B, d]. The anchors a and
    their gradient (from dL/da_c = sum_i P_ic x_i) are the weight-norm kernel's forward and
    backward on the small [C, d]: two calls instead of eight small ops. Softmax statistics are
    fp32 for low-precision inputs. Both |x| and |w_c| are clamped (EPS), as F.normalize
    clamps them: a zero row gets a zero direction, and weight-norm's backward with the clamped
    norm gives F.normalize's gradient there (g / EPS times the incoming gradient).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, labels: Tensor, scale: float, class_major: bool
    ) -> Tensor:
        with no_autocast(x):
            x_norm = torch.linalg.vector_norm(x, dim=1).clamp_min_(EPS)
            g = _column(len(weight), scale, weight.dtype, weight.device)
            # scale * unit anchors; w_norm [C, 1] is what the weight-norm backward expects
            w_norm = torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min_(EPS)
            anchors = weight * (g / w_norm)
            if class_major:  # [C, B]: |x_i| divides column i
                logits = torch.mm(anchors, x.T).div_(x_norm)
            else:  # [B, C]
                logits = torch.mm(x, anchors.T).div_(x_norm.unsqueeze(1))
            log_p = torch.log_softmax(as_float32(logits), dim=0 if class_major else 1)
            loss, total_weight = checked_nll(log_p, labels, class_major)
        ctx.save_for_backward(x, weight, labels)
        # intermediates, not inputs or outputs: plain attributes skip save_for_backward's checks
        ctx.parts = (x_norm, g, w_norm, anchors, logits, log_p, total_weight)
        ctx.scale, ctx.class_major = scale, class_major
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # The formulas treat the saved parts as constants: not differentiable twice. The
        # once_differentiable wrapper, which makes a second differentiation an error, costs
        # about a small op, so it is paid only where it matters: under create_graph.
        if torch.is_grad_enabled():
            return _fused_grads_once(ctx, grad)
        return _fused_grads(ctx, grad)


def _fused_grads(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    """_CosineCrossEntropy's backward (see its docstring for the formulas)."""
    x, weight, labels = ctx.saved_tensors
    x_norm, g, w_norm, anchors, logits, log_p, total_weight = ctx.parts
    class_major = ctx.class_major
    if class_major:  # the [1, C, 1, B] views of checked_nll
        log_p, target = log_p.view(1, -1, 1, len(labels)), labels.view(1, 1, -1)
        dlog_p = _NLL_2D[1](grad, log_p, target, None, _MEAN, _IGNORE, total_weight)
    else:
        dlog_p = _NLL_1D[1](grad, log_p, labels, None, _MEAN, _IGNORE, total_weight)
    dlogits = torch._log_softmax_backward_data(dlog_p, log_p, 1, log_p.dtype)  # G
    dlogits = dlogits.view(logits.shape).to(logits.dtype)
    # P = G / |x| in the logits' layout; p is P as [C, B], p_t as [B, C]. The sum over classes
    # of P * logits, / |x|, is dx's radial correction.
    class_dim = 0 if class_major else 1
    dlogits = dlogits.div_(x_norm if class_major else x_norm.unsqueeze(1))
    p, p_t = (dlogits, dlogits.T) if class_major else (dlogits.T, dlogits)
    dx = dw = None
    if ctx.needs_input_grad[0]:
        radial = (dlogits * logits).sum(dim=class_dim).div_(x_norm).unsqueeze(1)
        dx = torch.mm(p_t, anchors).addcmul_(x, radial, value=-1)
    if ctx.needs_input_grad[1]:
        dw, _ = _WEIGHT_NORM_BACKWARD(torch.mm(p, x), weight, g, w_norm, 0)
    return dx, dw, None, None, None


_fused_grads_once = torch.autograd.function.once_differentiable(_fused_grads)

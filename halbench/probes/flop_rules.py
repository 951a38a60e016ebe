"""The one FLOP rulebook: formulas per op on sizes, and the op-name -> handler table.

Convention (docs/probes.md): 2 FLOPs per multiply-add; 1 FLOP per element for pointwise
arithmetic, comparisons and transcendental functions; 1 FLOP per reduced (input) element for
reductions; 0 for data movement (views, copies, indexing, selection with ``where``).

Two layers, as fvcore's jit_handles.py: the formula helpers (``matmul_flops``,
``log_softmax_flops``, ...) take sizes and are what the losses' analytic ``flops()`` use
(halbench/losses); the handlers take an op's argument shapes and are what the counters in
probes/flops.py apply. A handler is built from a helper or by a factory such as
``elementwise_flop_counter(input_scale, output_scale)``. Pure Python: importing it costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

# A handler maps (args, out) to FLOPs, where every tensor has been replaced by its shape (a
# tuple) and every list of tensors by a list of shapes; scalars stay as they are.
Handler = Callable[[Sequence[Any], Any], int]


class Unsupported(Exception):
    """A handler cannot count this call (the op is then reported as unsupported)."""


# ----- formula helpers on sizes (shared with the losses' flops()) ---------------------------


def matmul_flops(m: int, k: int, n: int) -> int:
    """[m, k] x [k, n]: one multiply-add per output element and inner index."""
    return 2 * m * k * n


def addmm_flops(m: int, k: int, n: int, *, alpha: float = 1.0, beta: float = 1.0) -> int:
    """beta * input + alpha * ([m, k] x [k, n]): the product, the add, each scaling not by 1."""
    return matmul_flops(m, k, n) + m * n * (1 + (alpha != 1) + (beta != 1))


def vector_norm_flops(elements: int, outputs: int) -> int:
    """Square (or |x|^p) and sum per element, one root per output."""
    return 2 * elements + outputs


def normalize_flops(m: int, n: int) -> int:
    """F.normalize over the rows of [m, n]: vector_norm, clamp per row, divide per element."""
    return vector_norm_flops(m * n, m) + m + m * n


def squared_norms_flops(m: int, n: int) -> int:
    """(x * x).sum(dim=1) of [m, n]: square and sum per element."""
    return 2 * m * n


def weight_norm_flops(elements: int, norms: int) -> int:
    """aten's _weight_norm, v * g / |v| with one g per norm: |v| (2 per element, a root per
    norm), g / |v| per norm, the product per element."""
    return 3 * elements + 2 * norms


def softmax_flops(elements: int) -> int:
    """The stable kernel: max, subtract, exp, sum, divide per element."""
    return 5 * elements


def log_softmax_flops(elements: int, rows: int) -> int:
    """max, subtract, exp, sum, subtract per element; one log per row."""
    return 5 * elements + rows


def logsumexp_flops(elements: int, outputs: int) -> int:
    """max, subtract, exp, sum per element; log and add-back of the max per output."""
    return 4 * elements + 2 * outputs


def nll_flops(targets: int) -> int:
    """Pick and accumulate one log-probability per target."""
    return targets


def cross_entropy_flops(m: int, n: int) -> int:
    """Mean cross-entropy of [m, n] logits (either layout): log_softmax + NLL."""
    return log_softmax_flops(m * n, m) + nll_flops(m)


# ----- handlers on argument shapes ----------------------------------------------------------


def numel(shape: Any) -> int:
    """Elements of a shape (a scalar or unknown value counts as 1)."""
    return math.prod(shape) if isinstance(shape, Sequence) else 1


def first_shape(value: Any) -> tuple[int, ...]:
    """The first tensor shape in an op's output (ops such as max.dim return (values, indices))."""
    if isinstance(value, Sequence) and value and isinstance(value[0], Sequence):
        return tuple(value[0])
    return tuple(value) if isinstance(value, Sequence) else ()


def elementwise_flop_counter(input_scale: float = 1, output_scale: float = 0) -> Handler:
    """input_scale per element of the first input + output_scale per output element
    (fvcore's factory of the same name): pointwise ops are (0, 1), reductions (1, 0)."""

    def handler(args: Sequence[Any], out: Any) -> int:
        count = 0
        if input_scale:
            count += input_scale * numel(args[0])
        if output_scale:
            count += output_scale * numel(first_shape(out))
        return int(count)

    return handler


def argument_numel_counter(position: int, scale: int = 1) -> Handler:
    """scale per element of the argument at `position` (targets of NLL, sources of scatters)."""
    return lambda args, out: scale * numel(args[position])


def _rows(shape: Sequence[int], dim: int) -> int:
    return numel(shape) // shape[dim] if shape else 1


def _mm(args: Sequence[Any], out: Any) -> int:
    m, k = args[0]
    return matmul_flops(m, k, args[1][1])


def _scaled_add(args: Sequence[Any], out: Any) -> int:
    """beta * self + alpha * product: the add, plus one multiply per scale that is not 1."""
    beta, alpha = (list(args[3:5]) + [1, 1])[:2]
    return numel(first_shape(out)) * (1 + (beta != 1) + (alpha != 1))


def _bmm(args: Sequence[Any], out: Any) -> int:
    b, m, k = args[0]
    return b * matmul_flops(m, k, args[1][2])


def _mv(args: Sequence[Any], out: Any) -> int:
    # a weighted sum per output row: elementwise work, kept out of the matmul column, which
    # holds the products of two matrices (the O(BCd) and O(B^2 d) terms)
    m, n = args[0]
    return 2 * m * n


def _dot_per_output(args: Sequence[Any], out: Any) -> int:
    # broadcasting matmul / linear: every output element is one dot product of length k
    return 2 * numel(first_shape(out)) * args[0][-1]


def _linear(args: Sequence[Any], out: Any) -> int:
    has_bias = len(args) > 2 and isinstance(args[2], Sequence)
    return _dot_per_output(args, out) + (numel(first_shape(out)) if has_bias else 0)


def _einsum(args: Sequence[Any], out: Any) -> int:
    # Two operands: one multiply-add per point of the joint index space. More operands would
    # depend on the contraction order torch picks, so we refuse rather than guess.
    equation, shapes = args[0], args[1]
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    if len(inputs) != 2 or "." in equation:
        raise Unsupported(f"einsum with {len(inputs)} operands or ellipsis")
    sizes: dict[str, int] = {}
    for letters, shape in zip(inputs, shapes, strict=True):
        sizes.update(zip(letters, shape, strict=True))
    return 2 * math.prod(sizes.values())


def _euclidean_dist(args: Sequence[Any], out: Any) -> int:
    # torch's matmul form of cdist (p=2): |x|^2, |y|^2, -2x, one [P, d+2] x [d+2, R] matmul,
    # then clamp and sqrt per output
    x1, x2 = args[0], args[1]
    d, p, r = x1[-1], numel(x1[:-1]), numel(x2[:-1])
    batch = numel(first_shape(out)) // max(p * r, 1) if out is not None else 1
    p, r = p // batch, r // batch
    return batch * (3 * p * d + 2 * r * d + matmul_flops(p, d + 2, r) + 2 * p * r)


def _cdist_direct(args: Sequence[Any], out: Any) -> int:
    # per pair and dimension: subtract, multiply-add (3); one root per pair
    return numel(first_shape(out)) * (3 * args[0][-1] + 1)


def _cdist(args: Sequence[Any], out: Any) -> int:
    """aten::cdist as seen by the tracer, counted as the kernel torch will choose."""
    x1, x2 = args[0], args[1]
    p = args[2] if len(args) > 2 else 2.0
    mode = args[3] if len(args) > 3 else None
    use_mm = p == 2 and (mode == 1 or (mode in (None, 0) and (x1[-2] > 25 or x2[-2] > 25)))
    return _euclidean_dist(args, out) if use_mm else _cdist_direct(args, out)


def _convolution(args: Sequence[Any], out: Any) -> int:
    # one multiply-add per output element and kernel tap: 2 * out * (C_in / groups) * prod(k)
    weight = args[1]
    return 2 * numel(first_shape(out)) * numel(weight[1:])


def _log_softmax(args: Sequence[Any], out: Any) -> int:
    return log_softmax_flops(numel(args[0]), _rows(args[0], args[1]))


def _cross_entropy(args: Sequence[Any], out: Any) -> int:
    # what the dispatcher runs for it: log_softmax over dim 1, then nll_loss
    class_dim = 1 if len(args[0]) > 1 else 0
    return log_softmax_flops(numel(args[0]), _rows(args[0], class_dim)) + nll_flops(numel(args[1]))


_POINTWISE = """
    __and__ __or__ abs add addcdiv addcmul bitwise_and bitwise_not bitwise_or clamp
    clamp_max clamp_min cos div eq exp exp2 expm1 ge gt hardtanh le leaky_relu lerp log
    log1p log2 logical_and logical_not logical_or lt maximum minimum mul ne neg pow
    reciprocal relu rsqrt rsub sgn sigmoid sigmoid_backward sign sin softplus sqrt square
    sub tanh tanh_backward threshold threshold_backward true_divide xlogy
""".split()
_REDUCTIONS = """
    all amax amin any argmax argmin cumsum max mean min prod std sum topk var
""".split()
# Data movement, allocation and metadata: no arithmetic.
_DATA_MOVEMENT = """
    _local_scalar_dense _reshape_alias _to_copy _unsafe_view alias arange as_strided cat
    chunk clone contiguous copy detach diag_embed diagonal dropout empty empty_like
    empty_strided expand expand_as eye fill fill_diagonal flatten full full_like gather
    index index_put index_select Int item lift_fresh masked_fill masked_select narrow
    new_empty new_empty_strided new_full new_ones new_zeros nonzero numpy_T one_hot ones
    ones_like permute repeat reshape scalar_tensor ScalarImplicit scatter select
    select_backward size slice slice_backward split split_with_sizes squeeze stack stride sym_size
    t to transpose
    tril triu type_as unbind unsqueeze view where zero zeros zeros_like
""".split()

_pointwise = elementwise_flop_counter(0, 1)
_reduction = elementwise_flop_counter(1, 0)
_zero = elementwise_flop_counter(0, 0)

RULES: dict[str, Handler] = {
    **{name: _pointwise for name in _POINTWISE},
    **{name: _reduction for name in _REDUCTIONS},
    **{name: _zero for name in _DATA_MOVEMENT},
    # min and max in one pass: two reductions
    "aminmax": elementwise_flop_counter(2, 0),
    # accumulating scatters: one add per source element
    "index_add": argument_numel_counter(3),
    "scatter_add": argument_numel_counter(3),
    "mm": _mm,
    "addmm": lambda args, out: _mm(args[1:], out) + _scaled_add(args, out),
    "mv": _mv,
    "_weight_norm": lambda args, out: weight_norm_flops(numel(args[0]), numel(args[1])),
    "_weight_norm_interface": lambda args, out: weight_norm_flops(numel(args[0]), numel(args[1])),
    # (grad_w, v, g, norms): s = sum(grad_w * v) (2 per element), grad_g = s / |v|, and
    # grad_v = (g / |v|) (grad_w - v grad_g / |v|) (3 per element; g / |v|, grad_g / |v|)
    "_weight_norm_interface_backward": lambda args, out: 5 * numel(args[1]) + 3 * numel(args[2]),
    "bmm": _bmm,
    "baddbmm": lambda args, out: _bmm(args[1:], out) + _scaled_add(args, out),
    "matmul": _dot_per_output,
    "linear": _linear,
    "einsum": _einsum,
    "convolution": _convolution,
    "_convolution": _convolution,
    "conv2d": _convolution,
    "softmax": lambda args, out: softmax_flops(numel(args[0])),
    "_softmax": lambda args, out: softmax_flops(numel(args[0])),
    "log_softmax": _log_softmax,
    "_log_softmax": _log_softmax,
    # grad_in = y * (g - sum(g * y)) and g - exp(y) * sum(g): four ops per element
    "_softmax_backward_data": elementwise_flop_counter(4, 0),
    "_log_softmax_backward_data": elementwise_flop_counter(4, 0),
    "logsumexp": lambda args, out: logsumexp_flops(numel(args[0]), numel(first_shape(out))),
    "linalg_vector_norm": lambda args, out: vector_norm_flops(
        numel(args[0]), numel(first_shape(out))
    ),
    "norm": lambda args, out: vector_norm_flops(numel(args[0]), numel(first_shape(out))),
    "nll_loss": argument_numel_counter(1),
    "nll_loss_nd": argument_numel_counter(1),
    "nll_loss_forward": argument_numel_counter(1),
    "nll_loss_backward": argument_numel_counter(2),
    # [N, C, positions] inputs, e.g. class-major logits taken as one sample (losses/kernels.py)
    "nll_loss2d_forward": argument_numel_counter(1),
    "nll_loss2d_backward": argument_numel_counter(2),
    "cross_entropy_loss": _cross_entropy,
    "cdist": _cdist,
    "_cdist_forward": _cdist_direct,
    # per pair and dimension: difference, scale by grad/dist, accumulate; one divide per pair
    "_cdist_backward": lambda args, out: _cdist_direct(args[1:], args[4]),
    "_euclidean_dist": _euclidean_dist,
}

# The matmul column: the multiply-adds of products, convolutions and the pairwise-distance
# kernels (the O(B^2 d) / O(BCd) term); bias adds and scalings of addmm/linear stay out of it.
MATMUL_PART: dict[str, Handler] = {
    "mm": _mm,
    "addmm": lambda args, out: _mm(args[1:], out),
    "bmm": _bmm,
    "baddbmm": lambda args, out: _bmm(args[1:], out),
    "matmul": _dot_per_output,
    "linear": _dot_per_output,
    "einsum": _einsum,
    "convolution": _convolution,
    "_convolution": _convolution,
    "conv2d": _convolution,
    "cdist": _cdist,
    "_cdist_forward": _cdist_direct,
    "_cdist_backward": RULES["_cdist_backward"],
    "_euclidean_dist": _euclidean_dist,
}


def canonical_name(op_name: str) -> str:
    """'aten::add_' / 'add_.Tensor' / 'add' -> 'add' (namespace, overload and in-place dropped)."""
    name = op_name.split("::")[-1].split(".")[0]
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def rule_for(op_name: str) -> Handler | None:
    """The handler of an op by any of its names, or None when the rulebook has none."""
    return RULES.get(canonical_name(op_name))

"""FLOP counting of one loss call, forward and backward, with one table of rules.

Convention (docs/probes.md): 2 FLOPs per multiply-add; 1 FLOP per element for pointwise
arithmetic, comparisons and transcendental functions; 1 FLOP per reduced element for
reductions; 0 for data movement (views, copies, indexing, selection with ``where``).

Two counters apply the same rules at two levels of PyTorch:

- forward: fvcore's ``FlopCountAnalysis`` (TorchScript trace, sees ops such as ``aten::cdist``
  and ``aten::cross_entropy_loss`` before they are decomposed);
- forward and backward: ``torch.utils.flop_counter.FlopCounterMode`` with our rules as its
  custom mapping (dispatcher level, sees what autograd actually runs, e.g. ``_cdist_backward``).

Every op either has a rule (possibly "0, data movement") or is reported as unsupported; no op
is silently counted as zero.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from halbench.probes.call import grad_inputs, leaf, loss_args

# A rule maps (args, out) to FLOPs, where every tensor has been replaced by its shape (a tuple)
# and every list of tensors by a list of shapes; scalars stay as they are.
Rule = Callable[[Sequence[Any], Any], int]


def _numel(shape: Any) -> int:
    return math.prod(shape) if isinstance(shape, Sequence) else 1


def _first_shape(value: Any) -> tuple[int, ...]:
    """The first tensor shape in an op's output (ops such as max.dim return (values, indices))."""
    if isinstance(value, Sequence) and value and isinstance(value[0], Sequence):
        return tuple(value[0])
    return tuple(value) if isinstance(value, Sequence) else ()


def _pointwise(args: Sequence[Any], out: Any) -> int:
    return _numel(_first_shape(out))


def _reduction(args: Sequence[Any], out: Any) -> int:
    return _numel(args[0])


def _zero(args: Sequence[Any], out: Any) -> int:
    return 0


def _per_element(k: int) -> Rule:
    def rule(args: Sequence[Any], out: Any) -> int:
        return k * _numel(args[0])

    return rule


def _rows(shape: Sequence[int], dim: int) -> int:
    return _numel(shape) // shape[dim] if shape else 1


# Softmax-family kernels are counted as the numerically stable kernels compute them, the
# subtraction of the row maximum included (as docs/losses.md counts them).


def _softmax(args: Sequence[Any], out: Any) -> int:
    # max, subtract, exp, sum, divide per element
    return 5 * _numel(args[0])


def _log_softmax(args: Sequence[Any], out: Any) -> int:
    # max, subtract, exp, sum, subtract per element; one log per row
    return 5 * _numel(args[0]) + _rows(args[0], args[1])


def _logsumexp(args: Sequence[Any], out: Any) -> int:
    # max, subtract, exp, sum per element; log and add-back of the max per output
    return 4 * _numel(args[0]) + 2 * _numel(_first_shape(out))


def _vector_norm(args: Sequence[Any], out: Any) -> int:
    # square (or |x|^p) and sum per element, one root per output
    return 2 * _numel(args[0]) + _numel(_first_shape(out))


def _nll_loss(args: Sequence[Any], out: Any) -> int:
    # pick and accumulate one log-probability per target
    return _numel(args[1])


def _nll_loss_backward(args: Sequence[Any], out: Any) -> int:
    return _numel(args[2])


def _cross_entropy(args: Sequence[Any], out: Any) -> int:
    # what the dispatcher runs for it: log_softmax over dim 1, then nll_loss
    class_dim = 1 if len(args[0]) > 1 else 0
    return _log_softmax((args[0], class_dim), None) + _numel(args[1])


def _mm(args: Sequence[Any], out: Any) -> int:
    m, k = args[0]
    return 2 * m * k * args[1][1]


def _scaled_add(args: Sequence[Any], out: Any) -> int:
    """beta * self + alpha * product: the add, plus one multiply per scale that is not 1."""
    beta, alpha = (list(args[3:5]) + [1, 1])[:2]
    return _numel(_first_shape(out)) * (1 + (beta != 1) + (alpha != 1))


def _addmm(args: Sequence[Any], out: Any) -> int:
    return _mm(args[1:], out) + _scaled_add(args, out)


def _weight_norm(args: Sequence[Any], out: Any) -> int:
    # v * g / |v| with one g per norm: |v| (2 per element, a root per norm), g / |v| per norm,
    # the product per element
    return 3 * _numel(args[0]) + 2 * _numel(args[1])


def _weight_norm_backward(args: Sequence[Any], out: Any) -> int:
    # (grad_w, v, g, norms): s = sum(grad_w * v) (2 per element), grad_g = s / |v|, and
    # grad_v = (g / |v|) (grad_w - v grad_g / |v|) (3 per element; g / |v|, grad_g / |v|)
    return 5 * _numel(args[1]) + 3 * _numel(args[2])


def _mv(args: Sequence[Any], out: Any) -> int:
    # a weighted sum per output row: elementwise work, kept out of the matmul column, which
    # holds the products of two matrices (the O(BCd) and O(B^2 d) terms)
    m, n = args[0]
    return 2 * m * n


def _bmm(args: Sequence[Any], out: Any) -> int:
    b, m, k = args[0]
    return 2 * b * m * k * args[1][2]


def _baddbmm(args: Sequence[Any], out: Any) -> int:
    return _bmm(args[1:], out) + _scaled_add(args, out)


def _matmul(args: Sequence[Any], out: Any) -> int:
    # any broadcasting matmul: every output element is one dot product of length k
    return 2 * _numel(_first_shape(out)) * args[0][-1]


def _linear_product(args: Sequence[Any], out: Any) -> int:
    return 2 * _numel(_first_shape(out)) * args[0][-1]


def _linear(args: Sequence[Any], out: Any) -> int:
    has_bias = len(args) > 2 and isinstance(args[2], Sequence)
    return _linear_product(args, out) + (_numel(_first_shape(out)) if has_bias else 0)


def _einsum(args: Sequence[Any], out: Any) -> int:
    # Two operands: one multiply-add per point of the joint index space. More operands would
    # depend on the contraction order torch picks, so we refuse rather than guess.
    equation, shapes = args[0], args[1]
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    if len(inputs) != 2 or "." in equation:
        raise _Unsupported(f"einsum with {len(inputs)} operands or ellipsis")
    sizes: dict[str, int] = {}
    for letters, shape in zip(inputs, shapes, strict=True):
        sizes.update(zip(letters, shape, strict=True))
    return 2 * math.prod(sizes.values())


def _euclidean_dist(args: Sequence[Any], out: Any) -> int:
    # torch's matmul form of cdist (p=2): |x|^2, |y|^2, -2x, one [P, d+2] x [d+2, R] matmul,
    # then clamp and sqrt per output
    x1, x2 = args[0], args[1]
    d, p, r = x1[-1], _numel(x1[:-1]), _numel(x2[:-1])
    batch = _numel(_first_shape(out)) // max(p * r, 1) if out is not None else 1
    p, r = p // batch, r // batch
    return batch * (3 * p * d + 2 * r * d + 2 * p * r * (d + 2) + 2 * p * r)


def _cdist_direct(args: Sequence[Any], out: Any) -> int:
    # per pair and dimension: subtract, multiply-add (3); one root per pair
    return _numel(_first_shape(out)) * (3 * args[0][-1] + 1)


def _cdist(args: Sequence[Any], out: Any) -> int:
    """aten::cdist as seen by the tracer, counted as the kernel torch will choose."""
    x1, x2 = args[0], args[1]
    p = args[2] if len(args) > 2 else 2.0
    mode = args[3] if len(args) > 3 else None
    use_mm = p == 2 and (mode == 1 or (mode in (None, 0) and (x1[-2] > 25 or x2[-2] > 25)))
    return _euclidean_dist(args, out) if use_mm else _cdist_direct(args, out)


class _Unsupported(Exception):
    """A rule cannot count this call (the op is then reported as unsupported)."""


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

RULES: dict[str, Rule] = {
    **{name: _pointwise for name in _POINTWISE},
    **{name: _reduction for name in _REDUCTIONS},
    **{name: _zero for name in _DATA_MOVEMENT},
    # min and max in one pass: two reductions
    "aminmax": _per_element(2),
    # accumulating scatters: one add per source element
    "index_add": lambda args, out: _numel(args[3]),
    "scatter_add": lambda args, out: _numel(args[3]),
    "mm": _mm,
    "addmm": _addmm,
    "mv": _mv,
    "_weight_norm": _weight_norm,
    "_weight_norm_interface": _weight_norm,
    "_weight_norm_interface_backward": _weight_norm_backward,
    "bmm": _bmm,
    "baddbmm": _baddbmm,
    "matmul": _matmul,
    "linear": _linear,
    "einsum": _einsum,
    "softmax": _softmax,
    "_softmax": _softmax,
    "log_softmax": _log_softmax,
    "_log_softmax": _log_softmax,
    # grad_in = y * (g - sum(g * y)) and g - exp(y) * sum(g): four ops per element
    "_softmax_backward_data": _per_element(4),
    "_log_softmax_backward_data": _per_element(4),
    "logsumexp": _logsumexp,
    "linalg_vector_norm": _vector_norm,
    "norm": _vector_norm,
    "nll_loss": _nll_loss,
    "nll_loss_nd": _nll_loss,
    "nll_loss_forward": _nll_loss,
    "nll_loss_backward": _nll_loss_backward,
    # [N, C, positions] inputs, e.g. class-major logits taken as one sample (losses/base.py)
    "nll_loss2d_forward": _nll_loss,
    "nll_loss2d_backward": _nll_loss_backward,
    "cross_entropy_loss": _cross_entropy,
    "cdist": _cdist,
    "_cdist_forward": _cdist_direct,
    # per pair and dimension: difference, scale by grad/dist, accumulate; one divide per pair
    "_cdist_backward": lambda args, out: _cdist_direct(args[1:], args[4]),
    "_euclidean_dist": _euclidean_dist,
}

# "Matmul-like": products and pairwise distances (their cost is the O(B^2 d) / O(BCd) term);
# their whole count, bias adds and norms included, goes to the matmul column.
# The matmul column: the multiply-adds of products and the pairwise-distance kernels (the
# O(B^2 d) / O(BCd) term); bias adds and scalings of addmm/linear stay out of it.
MATMUL_PART: dict[str, Rule] = {
    "mm": _mm,
    "addmm": lambda args, out: _mm(args[1:], out),
    "bmm": _bmm,
    "baddbmm": lambda args, out: _bmm(args[1:], out),
    "matmul": _matmul,
    "linear": _linear_product,
    "einsum": _einsum,
    "cdist": _cdist,
    "_cdist_forward": _cdist_direct,
    "_cdist_backward": RULES["_cdist_backward"],
    "_euclidean_dist": _euclidean_dist,
}


def canonical_name(op_name: str) -> str:
    """'aten::add_' / 'add_.Tensor' / 'add' -> 'add' (namespace, overload and in-place dropped)."""
    name = op_name.split("::")[-1].split(".")[0]
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def rule_for(op_name: str) -> Rule | None:
    return RULES.get(canonical_name(op_name))


@dataclass
class FlopCount:
    """FLOPs of everything one counter saw."""

    total: int
    matmul: int
    by_op: dict[str, int]
    unsupported: list[str]


class _Tally:
    """Applies the rules for one counter: matmul part on the side, failures as unsupported."""

    def __init__(self) -> None:
        self.matmul = 0
        self.failed: Counter[str] = Counter()

    def rule(self, name: str) -> Rule:
        rule, product = RULES[name], MATMUL_PART.get(name)

        def apply(args: Sequence[Any], out: Any) -> int:
            try:
                flops = int(rule(args, out))
                self.matmul += int(product(args, out)) if product else 0
            except (_Unsupported, TypeError, ValueError, IndexError):
                self.failed[f"aten::{name}"] += 1
                return 0
            return flops

        return apply


# ---------------------------------------------------------------------------------------------
# Dispatcher level: FlopCounterMode with our rules (forward and backward)


def _aten_packets() -> dict[Any, str]:
    """aten OpOverloadPackets that have a rule (in-place variants included) -> rule name."""
    packets: dict[Any, str] = {}
    for name in RULES:
        for variant in (name, name + "_"):
            packet = getattr(torch.ops.aten, variant, None)
            if isinstance(packet, torch._ops.OpOverloadPacket):
                packets[packet] = name
    return packets


_PACKETS = _aten_packets()

# Metadata queries that FlopCounterMode answers itself; they never compute anything.
_METADATA = frozenset(
    """
    device dim is_contiguous is_non_overlapping_and_dense is_strides_like_format layout numel
    size storage_offset stride sym_is_contiguous sym_numel sym_size sym_storage_offset
    sym_stride
    """.split()
)


def _dispatch_formula(rule: Rule, packet: Any) -> Callable[..., int]:
    """A FlopCounterMode formula that hands the rule every argument by position, as the tracer
    does (keyword-only arguments such as addmm's alpha and beta arrive as kwargs here)."""
    schema = max((getattr(packet, o)._schema for o in packet.overloads()), key=_arity)

    def formula(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        if kwargs:
            args = args + tuple(
                kwargs.get(a.name, a.default_value if a.has_default_value() else None)
                for a in schema.arguments[len(args) :]
            )
        return rule(args, out_shape)

    return formula


def _arity(schema: Any) -> int:
    return len(schema.arguments)


class _UnsupportedRecorder(TorchDispatchMode):
    """Sees every op that reaches a kernel (it sits below the counter) and notes the ones
    without a rule."""

    def __init__(self) -> None:
        super().__init__()
        self.unsupported: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func._overloadpacket.__name__
        if name not in _METADATA and rule_for(name) is None:
            self.unsupported[f"aten::{name}"] += 1
        return func(*args, **(kwargs or {}))


class DispatchCounter:
    """Context manager: FLOPs of every op run inside it (forward or backward)."""

    def __enter__(self) -> DispatchCounter:
        self._tally = _Tally()
        self._recorder = _UnsupportedRecorder()
        mapping = {
            packet: _dispatch_formula(self._tally.rule(name), packet)
            for packet, name in _PACKETS.items()
        }
        self._counter = FlopCounterMode(display=False, custom_mapping=mapping)
        self._recorder.__enter__()
        self._counter.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._counter.__exit__(*exc)
        self._recorder.__exit__(*exc)

    def result(self) -> FlopCount:
        by_op: Counter[str] = Counter()
        for op, n in self._counter.get_flop_counts().get("Global", {}).items():
            by_op[canonical_name(op.__name__)] += int(n)
        unsupported = set(self._recorder.unsupported) | set(self._tally.failed)
        return FlopCount(sum(by_op.values()), self._tally.matmul, dict(by_op), sorted(unsupported))


# ---------------------------------------------------------------------------------------------
# Trace level: fvcore with our rules (forward only; the cross-check)


def _jit_value(value: torch._C.Value) -> Any:
    """A traced value as a rule sees it: shape for tensors, list for lists, else the constant."""
    kind = value.type()
    if isinstance(kind, torch._C.TensorType):
        sizes = kind.sizes()
        return tuple(sizes) if sizes is not None else None
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_jit_value(v) for v in node.inputs()]
    try:
        return value.toIValue()
    except RuntimeError:  # a value computed at run time (not a constant)
        return None


def _fvcore_handle(rule: Rule) -> Callable[..., int]:
    def handle(inputs: list[torch._C.Value], outputs: list[torch._C.Value]) -> int:
        out = [_jit_value(v) for v in outputs]
        return rule([_jit_value(v) for v in inputs], out[0] if len(out) == 1 else out)

    return handle


def count_fvcore(module: nn.Module, inputs: tuple[Any, ...]) -> FlopCount:
    """Forward FLOPs of ``module(*inputs)`` by fvcore's tracer with our rules for every op.

    Raises RuntimeError when TorchScript cannot trace the module.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices on import
        from fvcore.nn import FlopCountAnalysis

    tally = _Tally()
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(
        **{
            f"aten::{variant}": _fvcore_handle(tally.rule(name))
            for name in RULES
            for variant in (name, name + "_")
        }
    )
    # fvcore silently skips a fixed list of ops (relu, max, clamp, eq, ...); we count or
    # explicitly zero every op ourselves, so anything left over must surface as unsupported.
    analysis._ignored_ops = set()
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        by_op: Counter[str] = Counter()
        for op, n in analysis.by_operator().items():
            by_op[canonical_name(op)] += int(n)
        unsupported = set(analysis.unsupported_ops()) | set(tally.failed)
    return FlopCount(sum(by_op.values()), tally.matmul, dict(by_op), sorted(unsupported))


# ---------------------------------------------------------------------------------------------
# One loss call


@dataclass
class LossFlops:
    """FLOPs of one loss call. ``fwd``/``bwd``/``matmul_fwd`` come from the dispatcher-level
    counter; ``fwd_fvcore`` is fvcore's count of the same forward (None when it cannot trace
    the loss, with the reason in ``fvcore_error``)."""

    fwd: int
    bwd: int
    matmul_fwd: int
    matmul_bwd: int
    unsupported: list[str]
    fwd_fvcore: int | None = None
    fvcore_error: str | None = None


def count_loss_flops(
    loss: nn.Module,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor | None = None,
    *,
    cross_check: bool = True,
) -> LossFlops:
    """Count one call of ``loss``: forward, and backward into embeddings and loss parameters.

    With ``cross_check`` the forward is also counted by fvcore (slow the first time: it
    traces with TorchScript).
    """
    emb = leaf(embeddings)
    args = loss_args(emb, labels, indices)
    with DispatchCounter() as fwd_counter:
        out = loss(*args)
    with DispatchCounter() as bwd_counter:
        torch.autograd.grad(out, grad_inputs(loss, emb), allow_unused=True)
    fwd, bwd = fwd_counter.result(), bwd_counter.result()
    result = LossFlops(
        fwd.total,
        bwd.total,
        fwd.matmul,
        bwd.matmul,
        sorted(set(fwd.unsupported) | set(bwd.unsupported)),
    )
    if cross_check:
        try:
            traced = count_fvcore(loss, args)
        except RuntimeError as exc:  # TorchScript cannot trace some ops (see docs/probes.md)
            result.fvcore_error = str(exc).strip().splitlines()[0]
        else:
            # The tracer records a custom autograd.Function as one opaque op; the dispatcher
            # still sees the ops inside it, so only the cross-check is lost.
            opaque = [op for op in traced.unsupported if op.startswith("prim::PythonOp")]
            if opaque:
                result.fvcore_error = f"the tracer cannot see inside {', '.join(opaque)}"
            else:
                result.fwd_fvcore = traced.total
                result.unsupported = sorted(set(result.unsupported) | set(traced.unsupported))
    return result

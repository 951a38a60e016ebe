"""FLOP counting of one loss call, forward and backward, with the rules of flop_rules.py.

Two counters apply the same rulebook (probes/flop_rules.py) at two levels of PyTorch:

- forward and backward: ``torch.utils.flop_counter.FlopCounterMode`` with our rules as its
  custom mapping (dispatcher level, sees what autograd actually runs, e.g. ``_cdist_backward``);
- forward: fvcore's ``FlopCountAnalysis`` (TorchScript trace, sees ops such as ``aten::cdist``
  and ``aten::cross_entropy_loss`` before they are decomposed), the cross-check.

Every op either has a rule (possibly "0, data movement") or is reported as unsupported; no op
is silently counted as zero.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from halbench.probes.call import grad_inputs, leaf, loss_args
from halbench.probes.flop_rules import (
    MATMUL_PART,
    RULES,
    Handler,
    Unsupported,
    canonical_name,
    rule_for,
)
from halbench.probes.fvcore_compat import op_handles, skipped_ops
from halbench.probes.torch_compat import KernelOps, aten_packet, jit_value, schema_arguments

__all__ = [
    "MATMUL_PART",
    "RULES",
    "DispatchCounter",
    "FlopCount",
    "LossFlops",
    "canonical_name",
    "count_fvcore",
    "count_loss_flops",
    "rule_for",
]


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

    def rule(self, name: str) -> Handler:
        rule, product = RULES[name], MATMUL_PART.get(name)

        def apply(args: Sequence[Any], out: Any) -> int:
            try:
                flops = int(rule(args, out))
                self.matmul += int(product(args, out)) if product else 0
            except (Unsupported, TypeError, ValueError, IndexError):
                self.failed[f"aten::{name}"] += 1
                return 0
            return flops

        return apply

    def unsupported(self, op: str) -> Handler:
        """An fvcore handle for an op without a rule: counts nothing, reports the op."""

        def report(inputs: Sequence[Any], outputs: Any) -> Counter[str]:
            self.failed[op] += 1
            return Counter()

        return report


# ---------------------------------------------------------------------------------------------
# Dispatcher level: FlopCounterMode with our rules (forward and backward)


def _aten_packets() -> dict[Any, str]:
    """aten OpOverloadPackets that have a rule (in-place variants included) -> rule name."""
    packets: dict[Any, str] = {}
    for name in RULES:
        for variant in (name, name + "_"):
            packet = aten_packet(variant)
            if packet is not None:
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


def _dispatch_formula(rule: Handler, packet: Any) -> Callable[..., int]:
    """A FlopCounterMode formula that hands the rule every argument by position, as the tracer
    does (keyword-only arguments such as addmm's alpha and beta arrive as kwargs here)."""
    arguments = schema_arguments(packet)

    def formula(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        if kwargs:
            args = args + tuple(
                kwargs.get(name, default) for name, default in arguments[len(args) :]
            )
        return rule(args, out_shape)

    return formula


class DispatchCounter:
    """Context manager: FLOPs of every op run inside it (forward or backward)."""

    def __enter__(self) -> DispatchCounter:
        self._tally = _Tally()
        # Below the counter (entered first), it sees every op that reaches a kernel.
        self._recorder = KernelOps()
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
        unsupported = {
            f"aten::{name}"
            for name in self._recorder.ops
            if name not in _METADATA and rule_for(name) is None
        } | set(self._tally.failed)
        return FlopCount(sum(by_op.values()), self._tally.matmul, dict(by_op), sorted(unsupported))


# ---------------------------------------------------------------------------------------------
# Trace level: fvcore with our rules (forward only; the cross-check)


def _fvcore_handle(rule: Handler) -> Callable[..., int]:
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        out = [jit_value(v) for v in outputs]
        return rule([jit_value(v) for v in inputs], out[0] if len(out) == 1 else out)

    return handle


# fvcore's own handles count 1 per multiply-add (its docs: "one fused multiply-add = 1 flop");
# those we leave in place (norms, pooling, upsampling) are doubled to our convention, and every
# op of the rulebook (matmuls and convolutions among them) gets our handler instead.
_FVCORE_SCALE = 2


def count_fvcore(module: nn.Module, inputs: tuple[Any, ...]) -> FlopCount:
    """Forward FLOPs of ``module(*inputs)`` by fvcore's tracer, at 2 FLOPs per multiply-add.

    Our rules count every op of the rulebook; fvcore's remaining handles are doubled (they
    count per multiply-add). Raises RuntimeError when TorchScript cannot trace the module.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices on import
        from fvcore.nn import FlopCountAnalysis

    tally = _Tally()
    analysis = FlopCountAnalysis(module, inputs)
    ours = {
        f"aten::{variant}": _fvcore_handle(tally.rule(name))
        for name in RULES
        for variant in (name, name + "_")
    }
    theirs = {
        name: _double(handle) for name, handle in op_handles(analysis).items() if name not in ours
    }
    # fvcore silently skips a fixed list of ops (relu, max, clamp, eq, ...); we count or
    # explicitly zero every op ourselves, so a skipped op without a rule must surface as
    # unsupported: a handle that says so (fvcore looks up handles before its skip list).
    skipped = {name: tally.unsupported(name) for name in skipped_ops(analysis) - set(ours)}
    analysis.set_op_handle(**theirs, **ours, **skipped)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        by_op: Counter[str] = Counter()
        for op, n in analysis.by_operator().items():
            by_op[canonical_name(op)] += int(n)
        unsupported = set(analysis.unsupported_ops()) | set(tally.failed)
    return FlopCount(sum(by_op.values()), tally.matmul, dict(by_op), sorted(unsupported))


def _double(handle: Callable[..., Any]) -> Callable[..., Any]:
    """An fvcore handle (per multiply-add; a number or a Counter) at 2 FLOPs per multiply-add."""

    def doubled(inputs: list[Any], outputs: list[Any]) -> Any:
        count = handle(inputs, outputs)
        if isinstance(count, Counter):
            return Counter({key: _FVCORE_SCALE * value for key, value in count.items()})
        return _FVCORE_SCALE * count

    return doubled


# ---------------------------------------------------------------------------------------------
# One loss call


@dataclass
class LossFlops:
    """FLOPs of one loss call. ``fwd``/``bwd``/``matmul_fwd`` come from the dispatcher-level
    counter; ``fwd_fvcore`` is fvcore's count of the same forward (None when it cannot trace
    the loss), and ``fvcore_note`` says in one line why it is None or what fvcore could not
    count (None when it saw everything)."""

    fwd: int
    bwd: int
    matmul_fwd: int
    matmul_bwd: int
    unsupported: list[str]
    fwd_fvcore: int | None = None
    fvcore_note: str | None = None

    @property
    def fvcore_error(self) -> str | None:
        """The note when fvcore gave no count (the name earlier callers read)."""
        return self.fvcore_note if self.fwd_fvcore is None else None


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
    if not cross_check:
        result.fvcore_note = "not run (cross_check=False)"
        return result
    try:
        traced = count_fvcore(loss, args)
    except RuntimeError as exc:  # TorchScript cannot trace some ops (see docs/probes.md)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.fvcore_note = f"TorchScript cannot trace the loss: {first}"
        return result
    # The tracer records a custom autograd.Function as one opaque op; the dispatcher still sees
    # the ops inside it, so only the cross-check is lost.
    opaque = [op for op in traced.unsupported if op.startswith("prim::PythonOp")]
    if opaque:
        result.fvcore_note = f"the tracer cannot see inside {', '.join(opaque)}"
        return result
    result.fwd_fvcore = traced.total
    if traced.unsupported:
        result.fvcore_note = f"fvcore could not count {', '.join(traced.unsupported)}"
        result.unsupported = sorted(set(result.unsupported) | set(traced.unsupported))
    return result

"""The private PyTorch APIs the FLOP counters need, each behind a public function.

halbench uses torch's private names only here (and in losses/kernels*.py); tests/probes/
test_torch_compat.py checks that each still exists and behaves as these functions assume, so a
torch upgrade that moves one fails there, by name, instead of miscounting FLOPs.

- ``torch._ops.OpOverloadPacket``: the keys of FlopCounterMode's custom mapping;
- an overload's ``_schema``: the argument names and defaults of an aten op;
- ``torch.utils._python_dispatch.TorchDispatchMode`` and ``func._overloadpacket``: every op that
  reaches a kernel, by name;
- the TorchScript IR (``torch._C.Value``/``Node`` methods): a traced value as fvcore hands it to
  a handle.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch._ops import OpOverloadPacket
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["KernelOps", "aten_packet", "jit_value", "schema_arguments"]


def aten_packet(name: str) -> Any | None:
    """``torch.ops.aten.<name>`` (all overloads of one op), or None when aten has no such op.

    These packets are what ``FlopCounterMode(custom_mapping=...)`` keys its formulas on.
    """
    packet = getattr(torch.ops.aten, name, None)
    return packet if isinstance(packet, OpOverloadPacket) else None


def schema_arguments(packet: Any) -> list[tuple[str, Any]]:
    """(name, default) of every argument of the packet's widest overload, in schema order
    (default None where the argument has none)."""
    schema = max((getattr(packet, o)._schema for o in packet.overloads()), key=_arity)
    return [(a.name, a.default_value if a.has_default_value() else None) for a in schema.arguments]


def _arity(schema: Any) -> int:
    return len(schema.arguments)


class KernelOps(TorchDispatchMode):
    """Context manager: counts every aten op that reaches a kernel inside it, by op name
    ('mm', 'add', ...; overload and namespace dropped), in ``ops``.

    Entered after (inside) another mode such as FlopCounterMode, it sees what that mode passes
    down, i.e. every op that really runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.ops[func._overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def jit_value(value: Any) -> Any:
    """A TorchScript value (fvcore hands a handle lists of them) as a FLOP rule sees it: the
    shape tuple for a tensor (None when unknown), a list for a list construct, else the
    constant (None for a value computed at run time)."""
    kind = value.type()
    if isinstance(kind, torch.TensorType):
        sizes = kind.sizes()
        return tuple(sizes) if sizes is not None else None
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [jit_value(v) for v in node.inputs()]
    try:
        return value.toIValue()
    except RuntimeError:  # a value computed at run time (not a constant)
        return None

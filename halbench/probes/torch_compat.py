"""The private PyTorch APIs the FLOP counters need, each behind a public function.

halbench uses torch's private names only here (and in losses/kernels*.py); tests/probes/
test_torch_compat.py checks that each still exists and behaves as these functions assume, so a
torch upgrade that moves one fails there, by name, instead of miscounting FLOPs.

- ``torch._ops.OpOverloadPacket``: the keys of FlopCounterMode's custom mapping;
- an overload's ``_schema``: the argument names and defaults of an aten op;
- ``torch.utils._python_dispatch.TorchDispatchMode`` and ``func._overloadpacket``: every op that
  reaches a kernel, by name;
- the TorchScript IR (``torch._C.Value``/``Node`` methods): a traced value as fvcore hands it to
  a handle;
- a TorchDispatchMode that counts the ops that make the host wait for a device
  (``HostSyncCounter``, for the trainer's no-sync rule: halbench/trial/epoch.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch._ops import OpOverloadPacket
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "HostSyncCounter",
    "KernelOps",
    "aten_packet",
    "jit_value",
    "optimizer_host_tensors",
    "schema_arguments",
]


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


# ----- host syncs ---------------------------------------------------------------------------

# Ops whose output shape depends on the values of their input: each reads a count from the
# device before it can allocate its result.
DATA_DEPENDENT = {
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten._unique2.default,
    torch.ops.aten.unique_dim.default,
    torch.ops.aten.unique_consecutive.default,
    torch.ops.aten.repeat_interleave.Tensor,
}


def optimizer_host_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The CPU scalars an optimizer keeps in its state (AdamW's `step`): no device sync."""
    return [
        v
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor) and v.dim() == 0 and v.device.type == "cpu"
    ]


class HostSyncCounter(TorchDispatchMode):
    """Counts the ops of a block that would make the host wait for a GPU.

    - ``aten._local_scalar_dense``: ``.item()``, ``bool(t)``, ``float(t)``, ``if t:``;
    - ops whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``,
      indexing with a boolean mask): the host reads the size before it can allocate;
    - copies from a device to the CPU (``.cpu()``, ``.to("cpu")``).

    On the CPU nothing waits, but the same calls happen: the count on the CPU is the count the
    same code has on a GPU. Scalars an optimizer keeps on the host by design (AdamW's ``step``
    without ``capturable``) are read without a device wait: pass them as `host_tensors`.
    `counts`: op name -> times; `total`: all of them.
    """

    def __init__(self, host_tensors: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._host = {t.data_ptr() for t in host_tensors}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def ignore(self, tensors: Iterable[torch.Tensor]) -> None:
        """Leave these host scalars out from now on (an optimizer's state appears at step 1)."""
        self._host |= {t.data_ptr() for t in tensors}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self._syncs(func, args, kwargs):
            self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **kwargs)

    def _syncs(self, func: Any, args: tuple, kwargs: dict) -> bool:
        if func is torch.ops.aten._local_scalar_dense.default:
            return args[0].data_ptr() not in self._host
        if func in DATA_DEPENDENT:
            return True
        if func is torch.ops.aten.index.Tensor:  # x[mask]: a nonzero inside the kernel
            return any(i is not None and i.dtype == torch.bool for i in args[1] if i is not None)
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            is_copy = func is torch.ops.aten.copy_.default
            dst_device = args[0].device if is_copy else kwargs.get("device")
            src = args[1] if is_copy else args[0]
            return (
                dst_device is not None
                and torch.device(dst_device).type == "cpu"
                and src.device.type != "cpu"
            )
        return False

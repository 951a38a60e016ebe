"""Private torch APIs of the trial package, behind one public class: counting host syncs.

`HostSyncCounter` is a TorchDispatchMode (torch.utils._python_dispatch, a private module) that
sees every aten op a block of code runs and counts the ones that make the host wait for the
device on a GPU:

- `aten._local_scalar_dense`: `.item()`, `bool(t)`, `float(t)`, `if t:` on a tensor;
- ops whose output size depends on the data (`nonzero`, `masked_select`, `unique`, indexing
  with a boolean mask, ...): the host must read the size before it can allocate;
- copies from a device to the CPU (`.cpu()`, `.to("cpu")`, `.tolist()` goes through
  `_local_scalar_dense`).

On the CPU nothing waits, but the same calls happen: a count on the CPU is the count the same
code has on a GPU, which is what tests/trial/test_host_syncs.py and
benchmarks/trainer_throughput.py rely on. Scalars the optimizer keeps on the host by design
(AdamW's `step` counters without `capturable`) are read with `.item()` without any device
wait; pass them as `host_tensors` to leave them out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Ops whose output shape depends on the values of their input: each reads a count from the
# device before it can allocate its result.
DATA_DEPENDENT = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
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
    """Counts the ops of a block that would make the host wait for a GPU (module docstring).

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
        if func is aten._local_scalar_dense.default:
            return args[0].data_ptr() not in self._host
        if func in DATA_DEPENDENT:
            return True
        if func is aten.index.Tensor:  # x[mask]: a nonzero inside the kernel
            return any(i is not None and i.dtype == torch.bool for i in args[1] if i is not None)
        if func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst_device = args[0].device if func is aten.copy_.default else kwargs.get("device")
            return (
                dst_device is not None
                and torch.device(dst_device).type == "cpu"
                and src.device.type != "cpu"
            )
        return False

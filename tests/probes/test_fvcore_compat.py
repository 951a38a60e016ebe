"""The private fvcore state behind halbench.probes.fvcore_compat still behaves as it assumes.

A failure here after an fvcore upgrade names what moved; fix fvcore_compat.py (or, once fvcore
has a public reader, use it there), not its callers.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from halbench.probes.fvcore_compat import op_handles, skipped_ops

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch.jit deprecation notices on import
    from fvcore.nn import FlopCountAnalysis


def analysis(module: nn.Module, x: torch.Tensor) -> FlopCountAnalysis:
    counter = FlopCountAnalysis(module, (x,))
    counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return counter.tracer_warnings("none")


def count(counter: FlopCountAnalysis) -> tuple[int, dict[str, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return counter.total(), dict(counter.unsupported_ops())


def test_op_handles_lists_fvcore_defaults_as_a_copy() -> None:
    counter = analysis(nn.Linear(3, 2), torch.randn(4, 3))
    handles = op_handles(counter)
    for name in ("aten::linear", "aten::addmm", "aten::batch_norm", "aten::layer_norm"):
        assert callable(handles[name])
    handles.clear()
    assert op_handles(counter)  # the analysis keeps its own table
    counter.set_op_handle("aten::my_op", handles.get)
    assert "aten::my_op" in op_handles(counter)


def test_skipped_ops_lists_the_silently_skipped_ops_and_those_set_to_none() -> None:
    counter = analysis(nn.ReLU(), torch.randn(4, 3))
    skipped = skipped_ops(counter)
    assert {"aten::relu", "aten::max", "aten::clamp", "aten::eq"} <= skipped
    assert "aten::linear" not in skipped
    counter.set_op_handle("aten::linear", None)
    assert "aten::linear" in skipped_ops(counter)


def test_a_skipped_op_is_neither_counted_nor_unsupported_until_it_has_a_handle() -> None:
    counter = analysis(nn.ReLU(), torch.randn(4, 3))
    assert count(counter) == (0, {})
    calls = []

    def handle(inputs: list, outputs: list) -> int:
        calls.append(len(inputs))
        return 5

    # handles are looked up before the skip list: set_op_handle is enough to count a skipped op
    counter.set_op_handle("aten::relu", handle)
    assert count(counter) == (5, {}) and calls

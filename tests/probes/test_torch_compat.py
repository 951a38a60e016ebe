"""The private torch APIs behind halbench.probes.torch_compat still behave as it assumes.

A failure here after a torch upgrade names the API that moved; fix torch_compat.py, not its
callers.
"""

from __future__ import annotations

import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from halbench.probes.torch_compat import KernelOps, aten_packet, jit_value, schema_arguments


def test_aten_packet_is_the_key_flop_counter_mode_dispatches_on() -> None:
    packet = aten_packet("mm")
    assert packet is torch.ops.aten.mm
    assert aten_packet("no_such_op_anywhere") is None
    seen = []

    def formula(*args, out_shape=None, **kwargs) -> int:  # noqa: ANN001, ANN002, ANN003
        seen.append(tuple(args))
        return 7

    a, b = torch.randn(2, 3), torch.randn(3, 4)
    with FlopCounterMode(display=False, custom_mapping={packet: formula}) as counter:
        a @ b
    assert counter.get_total_flops() == 7
    assert seen == [(torch.Size([2, 3]), torch.Size([3, 4]))]  # shapes, by position


def test_schema_arguments_name_every_argument_with_its_default() -> None:
    arguments = dict(schema_arguments(aten_packet("addmm")))
    assert list(arguments)[:3] == ["self", "mat1", "mat2"]
    assert arguments["beta"] == 1 and arguments["alpha"] == 1
    assert arguments["self"] is None  # no default


def test_kernel_ops_counts_every_op_that_runs_by_name() -> None:
    a, b = torch.randn(2, 3), torch.randn(3, 4)
    with KernelOps() as seen:
        (a @ b + 1).exp_()
    assert seen.ops["mm"] == 1 and seen.ops["add"] == 1 and seen.ops["exp_"] == 1


def test_kernel_ops_below_flop_counter_mode_sees_what_it_passes_down() -> None:
    a, b = torch.randn(2, 3), torch.randn(3, 4)
    with KernelOps() as seen, FlopCounterMode(display=False) as counter:
        a @ b
    assert seen.ops["mm"] == 1 and counter.get_total_flops() == 2 * 2 * 3 * 4


def test_jit_value_gives_shapes_lists_and_constants() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=[1], keepdim=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        graph = torch.jit.trace(fn, (torch.randn(3, 4),)).graph
    (node,) = [n for n in graph.nodes() if n.kind() == "aten::sum"]
    tensor, dims, keepdim, dtype = (jit_value(v) for v in node.inputs())
    assert tensor == (3, 4)
    assert dims == [1]
    assert keepdim is True and dtype is None
    (out,) = (jit_value(v) for v in node.outputs())
    assert out == (3, 1)

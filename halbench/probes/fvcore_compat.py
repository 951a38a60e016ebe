"""The private parts of fvcore's ``FlopCountAnalysis`` the FLOP cross-check needs, read-only.

fvcore has a public setter for op handles (``set_op_handle``) but no public reader: which
handles an analysis holds and which ops it skips without counting live in the private
``_op_handles`` and ``_ignored_ops`` of ``fvcore.nn.jit_analysis.JitModelAnalysis``. halbench
reads them only here and changes them only through ``set_op_handle``;
tests/probes/test_fvcore_compat.py checks that both still exist and behave as assumed (a
handle set for a skipped op is called: fvcore looks up handles before its skip list).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Handle", "op_handles", "skipped_ops"]

# An fvcore handle: (inputs, outputs) as lists of TorchScript values -> a number or a Counter.
Handle = Callable[[list[Any], list[Any]], Any]


def op_handles(analysis: Any) -> dict[str, Handle]:
    """A copy of the analysis's op name -> handle table (fvcore's defaults plus any set)."""
    return dict(analysis._op_handles)


def skipped_ops(analysis: Any) -> frozenset[str]:
    """The op names the analysis skips silently when they have no handle (fvcore's list of
    "0 FLOP" ops such as relu, max, clamp, eq, plus any set to None)."""
    return frozenset(analysis._ignored_ops)

"""TrialProbe: sampling, summary columns, and that probing does not change training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from halbench import losses
from halbench.probes import TrialProbe
from halbench.probes.flops import count_loss_flops
from halbench.probes.trial_probe import SUMMARY_KEYS

N_TRAIN, B, D_IN, D, C = 64, 16, 12, 8, 4


def train(loss_name: str, probe: TrialProbe, steps: int = 12) -> tuple[nn.Module, nn.Module]:
    """A few SGD steps of a linear embedder, the way halbench.trial drives the probe."""
    torch.manual_seed(0)
    data_x, data_y = torch.randn(N_TRAIN, D_IN), torch.randint(0, C, (N_TRAIN,))
    model = nn.Linear(D_IN, D)
    loss_fn = losses.build(loss_name, num_classes=C, embedding_dim=D, memory_size=N_TRAIN)
    optimizer = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.1)
    probe.start()
    try:
        for step in range(steps):
            idx = torch.randint(0, N_TRAIN, (B,))
            with probe.step(step):
                loss = probe.loss_call(loss_fn, model(data_x[idx]), data_y[idx], idx)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        probe.close()
    return model, loss_fn


def test_disabled_probe_is_a_no_op_with_null_summary() -> None:
    probe = TrialProbe(every_n_steps=1, enabled=False)
    train("hal", probe, steps=3)
    assert probe.summary() == dict.fromkeys(SUMMARY_KEYS)
    assert probe.measuring_ms == 0


def test_sampled_steps_give_the_summary_columns() -> None:
    probe = TrialProbe(every_n_steps=5, enabled=True, device=torch.device("cpu"), repeats=2)
    assert [s for s in range(12) if probe.is_sampled(s)] == [1, 6, 11]
    model, loss_fn = train("hal", probe)
    summary = probe.summary()
    assert set(summary) == set(SUMMARY_KEYS)
    expected = count_loss_flops(loss_fn, torch.randn(B, D), torch.zeros(B, dtype=torch.long))
    assert summary["loss_flops_fwd"] == expected.fwd
    assert summary["loss_flops_bwd"] == expected.bwd
    assert summary["loss_call_ms"] > 0
    assert probe.measuring_ms > 3 * summary["loss_call_ms"]  # at least the timed calls
    assert summary["loss_share_of_step"] > 0
    assert summary["loss_peak_mem_bytes"] > 0
    # no GPU: device-level readings are null, and the probe says why
    assert summary["gpu_mem_peak_bytes"] is None and summary["energy_j"] is None
    assert any("no CUDA device" in note for note in probe.notes)


def test_no_sample_when_the_trial_is_shorter_than_the_first_sampled_step() -> None:
    probe = TrialProbe(every_n_steps=50)
    train("hal", probe, steps=1)
    assert probe.summary()["loss_call_ms"] is None


@pytest.mark.parametrize("loss_name", ["hal", "nca_memory"])
def test_probing_does_not_change_training(loss_name: str) -> None:
    # the measured copies must not touch gradients, the loss's state (memory bank) or the RNG
    probed = train(loss_name, TrialProbe(every_n_steps=2, repeats=2))
    plain = train(loss_name, TrialProbe(enabled=False))
    for a, b in zip(probed, plain, strict=True):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name


@pytest.mark.parametrize(
    "kwargs",
    [{"every_n_steps": 0}, {"every_n_steps": 2.5}, {"warmup": -1}, {"repeats": 0}],
)
def test_bad_parameters_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TrialProbe(**kwargs)

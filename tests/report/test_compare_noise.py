"""`halbench compare` against an identical but noisy rerun exits 0; a real slowdown exits 3."""

import random

from .fixtures import profile_row, trial
from .test_report import compare

LOSSES = {"nca": 1.0, "hal": 0.05}


def noisy_trials(seed, slow=1.0):
    """Three seeds per point whose loss-call times vary by up to ±35% (a loaded machine)."""
    rng = random.Random(seed)
    rows = []
    for loss, cost in LOSSES.items():
        for b in (32, 128):
            for s in range(3):
                acc = 0.8 + 0.01 * s + rng.uniform(-0.004, 0.004)
                time = cost * b * slow * rng.uniform(0.65, 1.35)
                rows.append(trial(loss, b, 16, s, acc, loss_call_ms=time, loss_flops_fwd=b * b))
    return rows


def noisy_profile(seed, slow=1.0):
    rng = random.Random(seed)
    rows = []
    for loss, cost in LOSSES.items():
        for b in (64, 256):
            t = cost * b * slow * rng.uniform(0.7, 1.4)
            row = profile_row(loss, b, 64, time=t, flops=b * b)
            row["time_fwdbwd_iqr_ms"] = 0.3 * t  # the repeats' spread on a shared machine
            rows.append(row)
    return rows


def test_identical_noisy_reruns_exit_0(make_run, capsys):
    for seed in range(1, 6):
        old, new = make_run(noisy_trials(0)), make_run(noisy_trials(seed))
        assert compare(old, new) == 0, capsys.readouterr().out
        old = make_run(profile=noisy_profile(0), suite_hash="p")
        new = make_run(profile=noisy_profile(seed), suite_hash="p")
        assert compare(old, new) == 0, capsys.readouterr().out


def test_a_threefold_slowdown_exits_3(make_run, capsys):
    old, new = make_run(noisy_trials(0)), make_run(noisy_trials(1, slow=3.0))
    assert compare(old, new) == 3
    assert ": time ×" in capsys.readouterr().out
    old = make_run(profile=noisy_profile(0), suite_hash="p")
    new = make_run(profile=noisy_profile(1, slow=3.0), suite_hash="p")
    assert compare(old, new) == 3
    assert ": time ×" in capsys.readouterr().out


def test_a_noisy_change_past_the_threshold_is_marked_within_noise(make_run, capsys):
    old = make_run(profile=noisy_profile(0), suite_hash="p")
    rows = noisy_profile(0)
    rows[0] = {**rows[0], "time_fwdbwd_ms": rows[0]["time_fwdbwd_ms"] * 1.4}  # +40%, IQR 30%
    assert compare(old, make_run(profile=rows, suite_hash="p")) == 0
    assert "within noise" in capsys.readouterr().out


def test_a_rerun_under_a_lighter_load_is_within_noise_not_better(make_run, capsys):
    """Every old seed ran under the same load: times shifted together, yet the seeds' ranges
    overlap, so the change is inside the measured spread (it read `0.413× ▼ better`)."""
    old_ms, new_ms = [0.50, 0.30, 0.70], [0.21, 0.18, 0.33]

    def rows(times):
        return [
            trial(loss, 64, 16, s, 0.8, loss_call_ms=ms * (1 if loss == "hal" else 2))
            for loss in ("hal", "nca")
            for s, ms in enumerate(times)
        ]

    assert compare(make_run(rows(old_ms)), make_run(rows(new_ms))) == 0
    out = capsys.readouterr().out
    assert "× ▼ better" not in out and "× within noise" in out

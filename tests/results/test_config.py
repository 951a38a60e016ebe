"""The configuration vocabulary the suite writes and the report reads back, spelled once."""

from halbench.results.config import SpaceEntry, config_columns, space_entries, split_config
from halbench.suite import tune


def test_the_suite_and_the_report_share_one_vocabulary():
    assert tune.split_config is split_config and tune.config_columns is config_columns
    cfg = {"lr": 0.01, "loss.scale": 8.0}
    assert split_config(cfg) == ({"lr": 0.01}, {"scale": 8.0})
    assert config_columns(cfg) == {"cfg_lr": 0.01, "cfg_loss_scale": 8.0}


def test_a_recorded_space_reads_back_with_the_keys_the_sampler_uses():
    space = {"lr": {"loguniform": [1e-4, 1e-2]}, "hal": {"scale": {"uniform": [4, 64]}}}
    entries = space_entries(space)
    assert entries == [
        SpaceEntry("lr", None, "loguniform", [1e-4, 1e-2]),
        SpaceEntry("loss.scale", "hal", "uniform", [4, 64]),
    ]
    parsed = tune.parse_space(space, {"hal": ["hal"]})
    assert {e.key for e in entries} == set(parsed.for_loss("hal"))
    assert space_entries({"lr": "not a distribution", "hal": {"scale": 3}}) == []

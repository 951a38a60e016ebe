"""Suites: a YAML file -> a validated, frozen Suite, before anything runs.

    models.py       the sections (dataset, model, losses, grid, train, eval, probes, resources)
    tune.py         the tune: and final: sections, search spaces, the selection rule
    yaml_file.py    bounded, safe reading of a suite file
    checks.py       what needs the registries: data shapes, the model, the losses
    tune_checks.py  the same for tune: and final:
    parse.py        load_suite / parse_suite: the above in order, one-line errors
    profile.py      profile suites (`halbench profile`), in the same vocabulary

The package exports the names most callers need; the modules are public too.
"""

from halbench.suite.models import (
    DatasetConfig,
    EvalConfig,
    GridConfig,
    LossSpec,
    ModelConfig,
    ProbesConfig,
    ResourcesConfig,
    Suite,
    TrainConfig,
    TrialSpec,
    suite_diff,
)
from halbench.suite.parse import load_suite, parse_suite

__all__ = [
    "DatasetConfig",
    "EvalConfig",
    "GridConfig",
    "LossSpec",
    "ModelConfig",
    "ProbesConfig",
    "ResourcesConfig",
    "Suite",
    "TrainConfig",
    "TrialSpec",
    "load_suite",
    "parse_suite",
    "suite_diff",
]

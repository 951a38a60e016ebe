"""One trial, top to bottom: data, model, loss, warm-up, train, probe, evaluate.

trainer.py     run_trial: builds a run (setup_run), trains it epoch by epoch, evaluates
epoch.py       one epoch's steps: warm-up off the clock, no host syncs in a step
curve.py       the sub-epoch convergence curve on fixed subsets
spec.py        what a trial is: the protocol's overrides applied, its identity row
optim.py       the optimizer and learning-rate schedule from the suite's train section
evaluation.py  embed whole splits and score them with k-NN (halbench.knn)
"""

from halbench.trial.spec import base_row, phase_epochs, resolve
from halbench.trial.trainer import (
    TrialResult,
    TrialRun,
    evaluate_run,
    run_trial,
    setup_run,
    train_epoch,
)

__all__ = [
    "TrialResult",
    "TrialRun",
    "base_row",
    "evaluate_run",
    "phase_epochs",
    "resolve",
    "run_trial",
    "setup_run",
    "train_epoch",
]

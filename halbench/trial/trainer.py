"""One trial: build data, model and loss; train; evaluate k-NN each epoch; report.

`run_trial` never raises for a failed trial (only KeyboardInterrupt / SystemExit pass): an
out-of-memory error gives status 'oom', a NaN/inf loss stops training with status 'diverged',
anything else gives 'error' with "ExceptionType: message" (halbench.failures.classify).
Metrics of the epochs that did finish stay in the epoch rows.

Conventions of the numbers:
- Times are training time only (k-NN evaluation excluded); `elapsed_s` is cumulative.
- Warm-up: the first WARMUP_STEPS steps of epoch 1 (cuDNN's algorithm search, torch.compile's
  compilation, the optimizer's state allocation) run off the clock; their time is the row's
  `warmup_s`. They are ordinary training steps (the same batches, the same updates), only
  untimed; epoch 1's time counts them at that epoch's steady per-step rate, so that every
  epoch's time covers all its steps. docs/probes.md.
- No host syncs in a step: the loss sum stays on the device and its finiteness is read only on
  the probe schedule (every probes.every_n_steps steps), after the warm-up and at epoch ends.
- The convergence curve (trial/curve.py) evaluates off the clock every quarter epoch.
- `best_knn_acc` / `best_epoch` and the convergence columns use the k-NN accuracy at the
  primary k (halbench.results.primary_k: the smallest evaluated k), as the report does.
- `epochs_to_90` is the first epoch whose accuracy reaches 90% of the final epoch's accuracy;
  `seconds_to_90` is the training time elapsed at the end of that epoch (same for 95).
  With `eval.every_n_epochs` = n only every n-th epoch (and the last) is evaluated: the other
  epoch rows have null accuracies, and these columns are measured at that resolution
  (the row's `eval_every`).
- Data subsets (and synthetic data) use a fixed data seed (DATA_SEED), so that trial seeds vary
  only the initialization, the batch order and the augmentation.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from halbench import data, failures, losses, models, results
from halbench.probes import (
    TrialProbe,
    device_name,  # the label profile rows carry too
    placement,
)
from halbench.results import embeddings
from halbench.suite import EvalConfig, Suite, TrialSpec
from halbench.trial.curve import Curve, build_curve
from halbench.trial.epoch import TrialRun, train_epoch, warmup_steps
from halbench.trial.evaluation import evaluate_model, evaluates
from halbench.trial.optim import build_optimizer, lr_factor
from halbench.trial.spec import base_row, resolve_spec, resolve_suite

DATA_SEED = 0


@dataclass
class TrialResult:
    row: dict[str, Any]  # one trials.parquet row (results.TRIAL_SCHEMA + knn_acc_<k>)
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epochs.parquet rows
    # eval.save_embeddings, a grid or final trial that finished: its test embeddings as the
    # bytes of their parquet file (results/embeddings.py), written by the run's store
    embeddings: bytes | None = None


def run_trial(
    suite: Suite, spec: TrialSpec, *, report: Callable[[dict[str, Any]], bool | None] | None = None
) -> TrialResult:
    """Train and evaluate one grid point; failures become a status, never an exception."""
    spec = resolve_spec(spec)  # a tuning/final trial's batch size, dim and loss params
    result = TrialResult(row=base_row(suite, spec))
    row = result.row
    row["started_at"] = placement.now()
    try:
        suite = resolve_suite(suite, spec)  # its train keys and epochs (validated: may fail)
        with _torch_settings(suite.train.deterministic):
            _train(suite, spec, result, report)
        row["status"] = "ok"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 - a failed trial is a row, the suite goes on
        row["status"], row["error"] = failures.classify(err)
    if row["status"] != "ok":
        result.embeddings = None  # only a finished trial's embeddings are kept
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["epochs_done"] = len(result.epochs)
    row["ended_at"] = placement.now()
    return result


def select_k(ks: list[int]) -> int:
    """The k whose accuracy ranks epochs: the report's primary k (results.primary_k)."""
    k = results.primary_k(ks)
    if k is None:
        raise ValueError("ks: expected at least one k")
    return k


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


@contextlib.contextmanager
def _torch_settings(deterministic: bool) -> Iterator[None]:
    """Deterministic algorithms (or cuDNN autotuning) for this trial; restored afterwards."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if deterministic:
        # cuBLAS reads this when it initializes; required for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1:]


def setup_run(suite: Suite, spec: TrialSpec, row: dict[str, Any]) -> TrialRun:
    """Data, model, loss and optimizer of one trial; fills the row's setup columns.

    Public with train_epoch and evaluate_run so that `halbench run --dry-run` (run/dryrun.py) times
    exactly the steps a trial runs, not a copy of them.
    """
    tcfg = suite.train
    device = resolve_device(tcfg.device)
    row["device"] = device_name(device)
    torch.manual_seed(spec.seed)
    ds = spec.dataset
    # The protocol: a tuning trial never reads the test split (halbench.data.load's phases).
    protocol: dict[str, Any] = {}
    if spec.phase != "grid" and suite.tune is not None:
        protocol = {"validation": suite.tune.validation, "phase": spec.phase}
        if spec.phase == "final" and suite.final is not None:
            protocol["train_on"] = suite.final.train_on
    splits = data.load(
        ds.name,
        root=ds.root,
        train_size=ds.train_size,
        test_size=ds.test_size,
        seed=DATA_SEED,
        device=device,
        download=ds.download,
        **protocol,
        **ds.params,
    )
    n_train = splits.train_x.shape[0]
    row["num_classes"] = splits.num_classes
    # What this trial really trained and was scored on (the report's setup table reads them).
    row.update({f"{split}_rows": n for split, n in splits.sizes.items() if n})
    model = models.build(
        suite.model.backbone,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        embedding_dim=spec.embedding_dim,
        **suite.model.params,
    ).to(device)
    on_gpu = device.type == "cuda"
    channels_last = tcfg.channels_last and on_gpu
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # build() hands memory_size only to the losses that declare needs_memory_size.
    loss_fn = losses.build(
        spec.loss.name,
        num_classes=splits.num_classes,
        embedding_dim=spec.embedding_dim,
        memory_size=n_train,
        **spec.loss.params,
    ).to(device)
    row["metric"] = loss_fn.metric if suite.eval.metric == "auto" else suite.eval.metric
    # A last partial batch would give BatchNorm (and in-batch losses) a batch of one.
    drop_last = n_train >= spec.batch_size
    steps = n_train // spec.batch_size if drop_last else 1
    if tcfg.max_steps_per_epoch is not None:
        steps = min(steps, tcfg.max_steps_per_epoch)
    row["steps_per_epoch"] = steps
    if isinstance(loss_fn, losses.KNNLoss):
        # Once per trial: the batches' labels are these rows (and a memory bank's indices
        # positions among them). Each call then reads nothing from the device: no host sync
        # per step (tests/trial/test_epoch.py counts them).
        loss_fn.skip_host_reads(splits.train_y)
    optimizer = build_optimizer(tcfg, model, loss_fn)
    return TrialRun(
        device=device,
        splits=splits,
        model=model,
        train_model=torch.compile(model) if tcfg.compile else model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tcfg, steps)),
        metric=row["metric"],
        steps=steps,
        drop_last=drop_last,
        augment=splits.augment_default if tcfg.augment == "auto" else tcfg.augment,
        amp=tcfg.amp and on_gpu,
        channels_last=channels_last,
        generator=torch.Generator().manual_seed(spec.seed),
    )


def _train(
    suite: Suite,
    spec: TrialSpec,
    result: TrialResult,
    report: Callable[[dict[str, Any]], bool | None] | None,
) -> None:
    row = result.row
    run = setup_run(suite, spec, row)
    probe = TrialProbe(
        every_n_steps=suite.probes.every_n_steps,
        enabled=suite.probes.enabled,
        device=run.device,
        warmup=suite.probes.warmup,
        repeats=suite.probes.repeats,
    )
    ks = list(suite.eval.ks)
    elapsed, images_total = 0.0, 0
    row["eval_every"] = suite.eval.every_n_epochs
    curve = trial_curve(suite, spec, run)
    saved: list[torch.Tensor] = []  # the last evaluation's test embeddings (save_embeddings)
    keep = saved.append if suite.eval.save_embeddings and spec.phase != "tune" else None
    if curve is not None:
        curve.record(run.model, 0)  # the untrained model: where every curve starts
    probe.start()
    try:
        for epoch in range(1, suite.train.epochs + 1):
            warm = warmup_steps(run.steps) if epoch == 1 else 0
            train_loss, images, epoch_time = train_epoch(
                run, spec.batch_size, probe, epoch, warmup_steps=warm, curve=curve
            )
            elapsed += epoch_time
            images_total += images
            eval_start = time.perf_counter()
            # A tuning trial is scored every epoch (ASHA compares per epoch), by MAP@R if asked.
            every = (
                spec.phase == "tune" and suite.tune is not None and suite.tune.metric == "map_at_r"
            )
            evaluated = spec.phase == "tune" or evaluates(
                epoch, suite.train.epochs, suite.eval.every_n_epochs
            )
            if evaluated:
                last = epoch == suite.train.epochs
                metrics = evaluate_run(run, suite.eval, final=every or last,
                                       keep=keep if last else None)  # fmt: skip
            else:  # null accuracies: this epoch was not evaluated (eval.every_n_epochs)
                metrics = {**{f"knn_acc_{k}": None for k in ks}, "anchor_acc": None}
            epoch_row = {
                **dict.fromkeys(results.EPOCH_SCHEMA),
                "trial_id": spec.trial_id,
                "epoch": epoch,
                "train_loss": train_loss,
                **{f"knn_acc_{k}": metrics[f"knn_acc_{k}"] for k in ks},
                "anchor_acc": metrics["anchor_acc"],
                "epoch_time_s": epoch_time,
                "elapsed_s": elapsed,
                "images_per_s": images / epoch_time,
                "lr": run.optimizer.param_groups[0]["lr"],
                "eval_time_s": time.perf_counter() - eval_start if evaluated else None,
            }
            if every:
                epoch_row["map_at_r"] = metrics["map_at_r"]
            result.epochs.append(epoch_row)
            row["epochs_done"] = epoch
            row["warmup_s"] = run.warmup_s
            # The report may end the trial here (a tuning trial whose group's epoch budget is
            # met, run/budget.py): the epochs so far are its result, as after an ASHA stop.
            if report is not None and report(epoch_row):
                break
        row.update(metrics)
        row["final_train_loss"] = train_loss
        row["train_time_s"] = elapsed
        row["images_per_s"] = images_total / elapsed
        row.update(convergence(result.epochs, select_k(ks)))
        row.update(probe.summary())
        if saved:
            result.embeddings = embeddings.to_parquet_bytes(
                saved[-1].cpu().numpy(), run.splits.eval_y.cpu().numpy(),
                trial_id=spec.trial_id, loss=str(row["loss"]), metric=run.metric,
            )  # fmt: skip
    finally:
        probe.close()
        if curve is not None:
            row.update(curve.columns())  # the points so far, also of a diverged trial


def trial_curve(suite: Suite, spec: TrialSpec, run: TrialRun) -> Curve | None:
    """The convergence curve of a grid or final trial (a tuning trial is scored per epoch)."""
    if spec.phase == "tune":
        return None
    return build_curve(
        run.splits,
        suite.eval,
        steps_per_epoch=run.steps,
        k=select_k(list(suite.eval.ks)),
        metric=run.metric,
        seed=DATA_SEED,
        amp=run.amp,
        channels_last=run.channels_last,
    )


def convergence(epochs: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Best epoch and accuracy, and epochs / seconds to 90% and 95% of the final accuracy."""
    return results.convergence(epochs, k, (0.9, 0.95))


def evaluate_run(
    run: TrialRun,
    ecfg: EvalConfig,
    *,
    final: bool,
    keep: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """The trial's evaluation (evaluation.evaluate_model) with its own model and splits;
    `keep` receives the evaluation split's embeddings."""
    return evaluate_model(
        run.model,
        run.loss_fn,
        run.splits,
        run.metric,
        ecfg,
        final=final,
        amp=run.amp,
        channels_last=run.channels_last,
        keep=keep,
    )

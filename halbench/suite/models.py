"""The suite's models: validated, frozen config; grid expansion; a stable suite hash.

A suite is the whole experiment: which data, model, losses, grid and training recipe. Every
mistake in it is reported as one line naming the file and the field, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from halbench.checks import MAX_INT, short
from halbench.suite.tune import FinalConfig, TuneConfig

# strict=True: "batch_size: '64'" or "epochs: 2.5" are type errors, not silently coerced.
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)

# Bounded so that products of a few stay inside int64; a 400-digit int is refused here.
BoundedInt = Annotated[int, Field(gt=0, le=MAX_INT)]
CountInt = Annotated[int, Field(ge=0, le=MAX_INT)]
# Trial seeds reach torch.manual_seed (<= 2^64 - 1) and the Int64 seed column (<= 2^63 - 1).
SeedInt = Annotated[int, Field(ge=0, le=2**63 - 1)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFinite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonEmptyPositiveList = Annotated[list[BoundedInt], Field(min_length=1)]


class Section(BaseModel):
    model_config = _STRICT


class DatasetConfig(Section):
    name: str
    root: str | None = None  # None: $HALBENCH_DATA, then the user cache (see halbench.data)
    train_size: BoundedInt | None = None  # stratified subset of the training split
    test_size: BoundedInt | None = None
    download: bool = False  # torchvision download when the files are absent
    params: dict[str, Any] = {}


class ModelConfig(Section):
    backbone: str = "small_cnn"
    params: dict[str, Any] = {}


class LossSpec(Section):
    name: str
    # Distinguishes two entries of one loss with different params (e.g. hal at s=16 and s=32).
    label: str | None = None
    params: dict[str, Any] = {}

    @field_validator("label")
    @classmethod
    def _file_safe_label(cls, v: str | None) -> str | None:
        return None if v is None else _check_label(v)

    @model_validator(mode="after")
    def _file_safe_display(self) -> LossSpec:
        # Without a label the name is the display name, which becomes part of trial ids.
        if self.label is None and not _DISPLAY_NAME.fullmatch(self.name):
            raise ValueError(
                f"loss name {short(self.name)} cannot name trial files (letters, digits, "
                "._-:=,+ up to 128, no leading dot, no '..'); give the entry a 'label'"
            )
        return self

    @property
    def display(self) -> str:
        return self.label or self.name


class GridConfig(Section):
    batch_size: NonEmptyPositiveList
    embedding_dim: NonEmptyPositiveList
    seed: Annotated[list[SeedInt], Field(min_length=1)]

    @field_validator("batch_size", "embedding_dim", "seed")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique, got {v}")
        return v


class TrainConfig(Section):
    epochs: BoundedInt = 2
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: PositiveFinite = 1e-3
    weight_decay: NonNegativeFinite = 5e-4
    momentum: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)] = 0.9
    nesterov: bool = True
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: NonNegativeFinite = 0.0
    step_size: BoundedInt = 30  # epochs between decays, schedule "step"
    gamma: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.1
    augment: Literal["auto"] | bool = "auto"  # auto: what suits the dataset (no flip on digits)
    amp: bool = False  # bf16 autocast, GPU only
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps_per_epoch: BoundedInt | None = None
    loss_lr_mult: PositiveFinite = 1.0  # lr multiplier for the loss's own parameters (anchors)

    # YAML writes 1e-3 as a string under YAML 1.1 unless it has a dot; accept ints for floats.
    @field_validator(
        "lr", "weight_decay", "momentum", "warmup_epochs", "gamma", "loss_lr_mult", mode="before"
    )
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return v
        return _to_float(v)

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> TrainConfig:
        # A warmup longer than the run trains at a fraction of lr throughout (1e29: lr ~ 0).
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({short(self.warmup_epochs)}) must be at most "
                f"epochs ({self.epochs})"
            )
        return self


class EvalConfig(Section):
    ks: NonEmptyPositiveList = [1, 5, 10]
    metric: Literal["auto", "cosine", "l2"] = "auto"  # auto: the metric the loss trains for
    weighted: bool = False
    # Images per embedding batch; "auto": 256 on a CPU (a batch that stays in cache: larger
    # ones were 2-3x slower per image here), 4096 on a GPU, halved on out-of-memory.
    batch_size: BoundedInt | Literal["auto"] = "auto"
    # Evaluate the k-NN accuracy every n epochs (the last epoch always): convergence columns
    # are then measured at that resolution (the trial row's eval_every).
    every_n_epochs: BoundedInt = 1
    # The sub-epoch convergence curve (halbench/trial/curve.py): every `curve_every` epochs
    # (at most a quarter), k-NN accuracy of `curve_subsample` evaluation images (0: no curve)
    # against `curve_reference` training images, both fixed subsets.
    curve_every: Annotated[float, Field(gt=0.0, le=0.25, allow_inf_nan=False)] = 0.25
    curve_subsample: CountInt = 1000
    curve_reference: BoundedInt = 5000
    # Keep each grid or final trial's test embeddings (and labels) in the run directory:
    # <run>/embeddings/<trial>.parquet (halbench/results/embeddings.py); tuning trials never.
    save_embeddings: bool = False

    @field_validator("curve_every", mode="before")
    @classmethod
    def _curve_number(cls, v: Any) -> Any:
        return _to_float(v)

    @field_validator("ks")
    @classmethod
    def _sorted_unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique, got {v}")
        return sorted(v)


CURVE_KEYS = ("curve_every", "curve_subsample", "curve_reference")


class ProbesConfig(Section):
    enabled: bool = True
    every_n_steps: BoundedInt = 50
    warmup: CountInt = 1
    repeats: BoundedInt = 3


class ResourcesConfig(Section):
    cpus_per_trial: PositiveFinite = 1.0
    gpus_per_trial: NonNegativeFinite = 0.0  # fractions pack trials on one GPU, e.g. 0.25
    memory_gb: PositiveFinite | None = None
    max_concurrent: BoundedInt | None = None
    exclusive_gpu: bool = False  # one trial per GPU, so that loss-call timings are undisturbed

    @field_validator("cpus_per_trial", "gpus_per_trial", "memory_gb", mode="before")
    @classmethod
    def _int_ok(cls, v: Any) -> Any:
        return _to_float(v) if isinstance(v, int) else v


class TrialSpec(Section):
    """One trial: a grid point, a tuning trial or a final seed of a tuned suite.

    `overrides` is the configuration a tuning or final trial runs with (halbench.suite.tune:
    train keys, batch_size, embedding_dim, `loss.<param>`); run_trial applies it. A final
    trial also names the tuning trial it retrains and that trial's validation score.
    """

    trial_id: str
    dataset: DatasetConfig
    loss: LossSpec
    batch_size: BoundedInt
    embedding_dim: BoundedInt
    seed: SeedInt
    phase: Literal["grid", "tune", "final"] = "grid"
    overrides: dict[str, Any] = {}
    tuned_from: str | None = None
    val_score: float | None = None


class Suite(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    description: str = ""
    datasets: Annotated[list[DatasetConfig], Field(min_length=1)]
    model: ModelConfig = ModelConfig()
    losses: Annotated[list[LossSpec], Field(min_length=1)]
    grid: GridConfig
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    probes: ProbesConfig = ProbesConfig()
    resources: ResourcesConfig = ResourcesConfig()
    # The fair protocol (halbench/suite/tune.py, docs/tuning.md): both sections or neither.
    tune: TuneConfig | None = None
    final: FinalConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _dataset_alias(cls, data: Any) -> Any:
        # "dataset: {...}" for the common one-dataset suite, "datasets: [...]" for several.
        if isinstance(data, dict) and "dataset" in data:
            if "datasets" in data:
                raise ValueError("give either 'dataset' or 'datasets', not both")
            data = dict(data)
            data["datasets"] = [data.pop("dataset")]
        return data

    @model_validator(mode="after")
    def _unique_labels(self) -> Suite:
        labels = [loss.display for loss in self.losses]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(
                f"losses: {', '.join(dupes)} appear more than once; give each a distinct 'label'"
            )
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError("datasets: each dataset may appear once")
        return self

    def trials(self) -> list[TrialSpec]:
        """Expand the grid: dataset x loss x batch size x embedding dim x seed."""
        return list(self._iter_trials())

    def _iter_trials(self) -> Iterator[TrialSpec]:
        for ds in self.datasets:
            for loss in self.losses:
                for b in self.grid.batch_size:
                    for d in self.grid.embedding_dim:
                        for seed in self.grid.seed:
                            yield TrialSpec(
                                trial_id=f"{ds.name}-{loss.display}-b{b}-d{d}-s{seed}",
                                dataset=ds,
                                loss=loss,
                                batch_size=b,
                                embedding_dim=d,
                                seed=seed,
                            )

    def science(self) -> dict[str, Any]:
        """The part of the suite that determines results (not resources or prose).

        An absent tune:/final: section is left out, so that a grid suite hashes as before.
        """
        exclude: dict[str, Any] = {"description": True, "resources": True}
        exclude |= {k: True for k in ("tune", "final") if getattr(self, k) is None}
        # The curve's keys at their defaults are left out too: the curve is measured off the
        # training, so a suite written before them hashes as before.
        curve = {
            k for k in CURVE_KEYS if getattr(self.eval, k) == EvalConfig.model_fields[k].default
        }
        # save_embeddings decides what is kept, not what is measured: never in the hash (a
        # resume may turn it on for the trials still to run).
        exclude["eval"] = curve | {"save_embeddings"}
        return self.model_dump(mode="json", exclude=exclude)

    def hash(self) -> str:
        blob = json.dumps(self.science(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def suite_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two normalized suites."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out.extend(suite_diff(old[key], new[key], path))
        return out
    return [] if old == new else [prefix or "<root>"]


# Trial ids and file names are built from labels: one path component, portable, short.
_LABEL = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_DISPLAY_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_:=,+-][A-Za-z0-9._:=,+-]{0,127}")


def _to_float(v: Any) -> Any:
    """YAML 1.1 reads 1e-3 (no dot) as a string, and ints are fine for floats."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", v.strip()):
        return float(v)  # 1e400 is inf here, and refused by the field
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:  # a 400-digit integer
            raise ValueError(f"must be a finite number, got {short(v)}") from None
    return v


def _check_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise ValueError(
            "a label must be 1-64 letters, digits or ._- without a leading dot "
            f"(it names trial files), got {short(label)}"
        )
    return label

"""Suite files: YAML -> validated, frozen config; grid expansion; a stable suite hash.

A suite is the whole experiment: which data, model, losses, grid and training recipe. Every
mistake in it is reported as one line naming the file and the field, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from halbench.errors import UserError

# strict=True: "batch_size: '64'" or "epochs: 2.5" are type errors, not silently coerced.
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)

NonEmptyPositiveList = Annotated[list[PositiveInt], Field(min_length=1)]


class _Section(BaseModel):
    model_config = _STRICT


class DatasetConfig(_Section):
    name: str
    root: str | None = None  # None: $HALBENCH_DATA, then the user cache (see halbench.data)
    train_size: PositiveInt | None = None  # stratified subset of the training split
    test_size: PositiveInt | None = None
    download: bool = False  # torchvision download when the files are absent
    params: dict[str, Any] = {}


class ModelConfig(_Section):
    backbone: str = "small_cnn"
    params: dict[str, Any] = {}


class LossSpec(_Section):
    name: str
    # Distinguishes two entries of one loss with different params (e.g. hal at s=16 and s=32).
    label: str | None = None
    params: dict[str, Any] = {}

    @property
    def display(self) -> str:
        return self.label or self.name


class GridConfig(_Section):
    batch_size: NonEmptyPositiveList
    embedding_dim: NonEmptyPositiveList
    seed: Annotated[list[NonNegativeInt], Field(min_length=1)]

    @field_validator("batch_size", "embedding_dim", "seed")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique, got {v}")
        return v


class TrainConfig(_Section):
    epochs: PositiveInt = 2
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 5e-4
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    nesterov: bool = True
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: NonNegativeFloat = 0.0
    step_size: PositiveInt = 30  # epochs between decays, schedule "step"
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    augment: Literal["auto"] | bool = "auto"  # auto: what suits the dataset (no flip on digits)
    amp: bool = False  # bf16 autocast, GPU only
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps_per_epoch: PositiveInt | None = None
    loss_lr_mult: PositiveFloat = 1.0  # lr multiplier for the loss's own parameters (anchors)

    # YAML writes 1e-3 as a string under YAML 1.1 unless it has a dot; accept ints for floats.
    @field_validator(
        "lr", "weight_decay", "momentum", "warmup_epochs", "gamma", "loss_lr_mult", mode="before"
    )
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return float(v)
        if isinstance(v, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", v.strip()):
            return float(v)
        return v


class EvalConfig(_Section):
    ks: NonEmptyPositiveList = [1, 5, 10]
    metric: Literal["auto", "cosine", "l2"] = "auto"  # auto: the metric the loss trains for
    weighted: bool = False
    batch_size: PositiveInt = 1024

    @field_validator("ks")
    @classmethod
    def _sorted_unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique, got {v}")
        return sorted(v)


class ProbesConfig(_Section):
    enabled: bool = True
    every_n_steps: PositiveInt = 50
    warmup: NonNegativeInt = 1
    repeats: PositiveInt = 3


class ResourcesConfig(_Section):
    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: NonNegativeFloat = 0.0  # fractions pack trials on one GPU, e.g. 0.25
    memory_gb: PositiveFloat | None = None
    max_concurrent: PositiveInt | None = None
    exclusive_gpu: bool = False  # one trial per GPU, so that loss-call timings are undisturbed

    @field_validator("cpus_per_trial", "gpus_per_trial", "memory_gb", mode="before")
    @classmethod
    def _int_ok(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class TrialSpec(_Section):
    """One point of the grid."""

    trial_id: str
    dataset: DatasetConfig
    loss: LossSpec
    batch_size: PositiveInt
    embedding_dim: PositiveInt
    seed: NonNegativeInt


class Suite(_Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    datasets: Annotated[list[DatasetConfig], Field(min_length=1)]
    model: ModelConfig = ModelConfig()
    losses: Annotated[list[LossSpec], Field(min_length=1)]
    grid: GridConfig
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    probes: ProbesConfig = ProbesConfig()
    resources: ResourcesConfig = ResourcesConfig()

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
        """The part of the suite that determines results (not resources or prose)."""
        return self.model_dump(mode="json", exclude={"description", "resources"})

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


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(
            ("function-", "literal[", "constrained-")
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _format_validation_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = _loc(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
        if loc == "datasets":
            loc = "dataset"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        if "input" in first and first["type"] not in ("model_type", "dict_type", "value_error"):
            got = first["input"]
            if not isinstance(got, dict | list) or len(repr(got)) < 60:
                msg += f" (got {got!r})"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {loc}: {msg}{tail}"


def parse_suite(data: Any, path: Path) -> Suite:
    """Validate a loaded YAML document; raise UserError naming the file and field."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of suite keys at the top level")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_validation_error(path, err)) from None
    _check_names(suite, path)
    return suite


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    return parse_suite(read_suite_file(path), path)


def read_suite_file(path: Path) -> Any:
    """A suite file's YAML document; UserError naming the file when it cannot be read."""
    from halbench.failures import message_line

    if not path.exists():
        raise UserError(f"{path}: suite file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file (expected a suite YAML file)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or message_line(err)
        raise UserError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected YAML)") from None
    return data


def _check_names(suite: Suite, path: Path) -> None:
    """Unknown datasets, models and losses, and bad loss parameters, fail before any trial."""
    from halbench import data, models
    from halbench.plugins import load_plugins

    load_plugins()
    for i, ds in enumerate(suite.datasets):
        if ds.name not in data.DATASETS:
            raise UserError(
                f"{path}: datasets[{i}].name: unknown dataset {ds.name!r}; "
                f"available: {', '.join(data.available())}"
            )
    if suite.model.backbone not in models.MODELS:
        raise UserError(
            f"{path}: model.backbone: unknown model {suite.model.backbone!r}; "
            f"available: {', '.join(models.available())}"
        )
    # num_classes and memory_size are placeholders (the real ones come from the data).
    check_losses(suite.losses, path, num_classes=10, embedding_dim=suite.grid.embedding_dim[0])


def check_losses(
    specs: list[LossSpec], path: Path | str, *, num_classes: int, embedding_dim: int
) -> None:
    """Every loss builds with its params (its name and each parameter are checked).

    Anchors are cheap to make at one shape; UserError `path: losses[i] (name): message`.
    """
    from halbench import losses
    from halbench.failures import message_line

    for i, loss in enumerate(specs):
        try:
            losses.build(
                loss.name,
                num_classes=num_classes,
                embedding_dim=embedding_dim,
                memory_size=64,
                **loss.params,
            )
        except (ValueError, TypeError, ImportError) as err:
            raise UserError(f"{path}: losses[{i}] ({loss.name}): {message_line(err)}") from None

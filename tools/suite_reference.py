"""Render docs/suite-reference.md, every suite key, from the suite models themselves.

    python tools/suite_reference.py            # print the reference
    python tools/suite_reference.py --check    # exit 1 when docs/suite-reference.md is stale
    python tools/suite_reference.py --write    # rewrite docs/suite-reference.md

Keys, types, bounds and defaults are read from the pydantic models (halbench/suite/models.py,
tune.py, profile.py); each key's description is DESCRIPTIONS below, else the comment beside
the field in its model. tests/test_docs.py fails when the file is stale or a key has neither.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "suite-reference.md"
BIG = 2**31  # upper bounds beyond this only keep products inside int64: not worth showing

DESCRIPTIONS: dict[str, str] = {
    "Suite.name": "names the run directory (reports/<name>/...) and the report",
    "Suite.description": "one line of prose for the report; not part of the suite hash",
    "Suite.datasets": "the datasets, each run with every loss and grid point; `dataset:` "
    "(one mapping) is the same as a one-entry `datasets:` list",
    "Suite.model": "the backbone that maps images to embeddings",
    "Suite.losses": "the losses compared, each with its parameters",
    "Suite.grid": "the points every loss is trained at: batch size x embedding dim x seed",
    "Suite.train": "the training recipe, the same for every trial",
    "Suite.eval": "how the learned embeddings are scored (k-NN classification)",
    "Suite.probes": "cost measurements taken during training (FLOPs, time, memory)",
    "Suite.resources": "what each trial asks of Ray; not part of the suite hash",
    "Suite.tune": "the fair protocol: tune every loss on a validation split with equal budget "
    "(docs/tuning.md); needs `final:` too",
    "Suite.final": "retrain each loss's best validation configuration per seed and test it",
    "DatasetConfig.name": "a registered dataset (`halbench list datasets`)",
    "DatasetConfig.root": "where its files are; default $HALBENCH_DATA, then "
    "~/.cache/halbench/data",
    "DatasetConfig.train_size": "a class-stratified subset of the training split",
    "DatasetConfig.test_size": "a class-stratified subset of the test split",
    "DatasetConfig.download": "let torchvision download absent files (else a missing dataset "
    "is an error before any trial)",
    "DatasetConfig.params": "dataset-specific parameters (synthetic: num_classes, image_size, "
    "channels, noise, pattern_seed)",
    "ModelConfig.backbone": "a registered model (`halbench list models`)",
    "ModelConfig.params": "the backbone's own parameters (small_cnn: width, head_bn)",
    "LossSpec.name": "a registered loss (`halbench list losses`) or `pml:<Class>[:key=value,...]`",
    "LossSpec.label": "names this entry in trial ids and reports; needed when one loss "
    "appears twice with different params",
    "LossSpec.params": "the loss's parameters (`halbench list losses NAME` shows them)",
    "GridConfig.batch_size": "batch sizes B (unique)",
    "GridConfig.embedding_dim": "embedding dimensions d (unique)",
    "GridConfig.seed": "training seeds (unique); accuracy is reported as mean and 95% CI over them",
    "TrainConfig.epochs": "passes over the training set",
    "TrainConfig.optimizer": "the optimizer",
    "TrainConfig.lr": "learning rate",
    "TrainConfig.weight_decay": "weight decay",
    "TrainConfig.momentum": "SGD momentum",
    "TrainConfig.nesterov": "Nesterov momentum (SGD)",
    "TrainConfig.schedule": "learning-rate schedule",
    "TrainConfig.warmup_epochs": "linear warm-up of the learning rate, in epochs (at most "
    "`epochs`)",
    "TrainConfig.step_size": "epochs between decays (schedule `step`)",
    "TrainConfig.gamma": "decay factor per step (schedule `step`)",
    "TrainConfig.augment": "random crop and flip; `auto`: what suits the dataset (no flip on "
    "digits)",
    "TrainConfig.amp": "bf16 autocast (GPU only)",
    "TrainConfig.channels_last": "channels-last memory format (GPU)",
    "TrainConfig.compile": "torch.compile the model",
    "TrainConfig.deterministic": "deterministic algorithms (bit-identical reruns, slower)",
    "TrainConfig.device": "where trials train; `auto`: CUDA when present",
    "TrainConfig.max_steps_per_epoch": "cap the optimizer steps of an epoch (quick runs)",
    "TrainConfig.loss_lr_mult": "learning-rate multiplier for the loss's own parameters "
    "(anchors, proxies)",
    "EvalConfig.ks": "the k of the k-NN classifiers scored (unique, sorted)",
    "EvalConfig.metric": "the k-NN distance; `auto`: the metric the loss trains for",
    "EvalConfig.weighted": "distance-weighted votes",
    "EvalConfig.batch_size": "images per embedding batch; `auto`: 256 on a CPU, 4096 on a "
    "GPU, halved on out-of-memory",
    "EvalConfig.every_n_epochs": "score every n epochs (the last epoch always)",
    "EvalConfig.curve_every": "convergence curve: evaluate every this many epochs (at most 0.25)",
    "EvalConfig.curve_subsample": "convergence curve: evaluation images it scores (0: no curve)",
    "EvalConfig.curve_reference": "convergence curve: training images it searches as neighbours",
    "ProbesConfig.enabled": "measure the loss calls during training",
    "ProbesConfig.every_n_steps": "probe one loss call every n optimizer steps",
    "ProbesConfig.warmup": "untimed calls before each measurement",
    "ProbesConfig.repeats": "timed calls per measurement (median and spread reported)",
    "ResourcesConfig.cpus_per_trial": "CPUs Ray reserves for each trial",
    "ResourcesConfig.gpus_per_trial": "GPUs per trial; a fraction packs trials on one GPU "
    "(e.g. 0.25)",
    "ResourcesConfig.memory_gb": "memory Ray reserves for each trial",
    "ResourcesConfig.max_concurrent": "at most this many trials at once (`--max-concurrent` "
    "overrides)",
    "ResourcesConfig.exclusive_gpu": "one trial per GPU, so that loss-call timings are undisturbed",
    "TuneConfig.validation": "held out of the training split for selection: a fraction "
    "(0 < f < 1) or a count, stratified",
    "TuneConfig.budget": "tuning trials per loss (the same for every loss)",
    "TuneConfig.epochs": "epochs per tuning trial",
    "TuneConfig.scheduler": "`asha` stops poor trials early; `fifo` runs every trial to the end",
    "TuneConfig.grace_epochs": "epochs before ASHA may stop a trial",
    "TuneConfig.search": "how configurations are drawn (`optuna` needs halbench[optuna])",
    "TuneConfig.metric": "the validation score that selects (a k-NN accuracy column)",
    "TuneConfig.seed": "the sampler's seed",
    "TuneConfig.space": "what is tuned: train keys, batch_size, embedding_dim and "
    "`loss.<param>`, each a distribution (docs/tuning.md)",
    "FinalConfig.seeds": "seeds of the final runs (never a tuning seed)",
    "FinalConfig.epochs": "epochs per final run",
    "FinalConfig.train_on": "train on the training split minus validation, or on all of it",
    "ProfileSuite.kind": "marks a profile suite (`halbench profile`)",
    "ProfileSuite.name": "names the output and the report",
    "ProfileSuite.description": "one line of prose for the report",
    "ProfileSuite.losses": "the losses whose calls are measured",
    "ProfileSuite.grid": "the points each loss call is measured at",
    "ProfileSuite.memory_size": "memory-bank size of the memory-bank losses",
    "ProfileSuite.device": "where the calls run",
    "ProfileSuite.probes": "how each point is measured",
    "ProfileSuite.resources": "what the sweep asks of Ray (as in a run suite)",
    "ProfileGridConfig.batch_size": "batch sizes B",
    "ProfileGridConfig.embedding_dim": "embedding dimensions d",
    "ProfileGridConfig.num_classes": "numbers of classes C",
    "ProfileCallsConfig.warmup": "untimed calls before timing",
    "ProfileCallsConfig.repeats": "timed calls per point and round",
    "ProfileCallsConfig.rounds": "rounds over all points, losses interleaved; a point's time "
    "is the median of all its rounds",
}


def _models() -> list[tuple[str, type[BaseModel]]]:
    """(heading key, model) of every section, in the order a suite file is written."""
    from halbench.suite import models as m
    from halbench.suite.profile import ProfileCallsConfig, ProfileGridConfig, ProfileSuite
    from halbench.suite.tune import FinalConfig, TuneConfig

    return [
        ("top level", m.Suite),
        ("dataset / datasets[]", m.DatasetConfig),
        ("model", m.ModelConfig),
        ("losses[]", m.LossSpec),
        ("grid", m.GridConfig),
        ("train", m.TrainConfig),
        ("eval", m.EvalConfig),
        ("probes", m.ProbesConfig),
        ("resources", m.ResourcesConfig),
        ("tune", TuneConfig),
        ("final", FinalConfig),
        ("profile suite: top level", ProfileSuite),
        ("profile suite: grid", ProfileGridConfig),
        ("profile suite: probes", ProfileCallsConfig),
    ]


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment lines above each field of `model` and the comment beside it, joined."""
    source = textwrap.dedent(inspect.getsource(model))
    lines = source.splitlines()
    comments = {
        t.start[0]: t.string.lstrip("#").strip()
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    }
    found = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above, line = [], node.lineno - 1
        while line >= 1 and lines[line - 1].strip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        beside = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        if text := " ".join(above + beside):
            found[node.target.id] = text
    return found


def _bounds(metadata: list[Any]) -> str:
    out = []
    for item in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None and not (sign.startswith("<") and value >= BIG):
                out.append(f"{sign} {value}")
        if getattr(item, "min_length", None):
            out.append("non-empty")
    return ", ".join(out)


def type_text(tp: Any, metadata: list[Any] | None = None) -> str:
    """A readable type: `int > 0`, `list of int >= 0 (non-empty)`, `'a' or 'b'`, `mapping`."""
    metadata = list(metadata or [])
    while typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        metadata += [getattr(e, "metadata", None) or [e] for e in extra][0] if extra else []
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bounds = _bounds(metadata)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        text = " or ".join(parts) + (" or null" if type(None) in args else "")
    elif origin is typing.Literal:
        text = " or ".join(f"`{a}`" for a in args)
    elif origin is list:
        inner = type_text(args[0])
        text = "list of mappings" if inner == "mapping (a section)" else f"list of {inner}"
        if "non-empty" in bounds:
            return f"non-empty {text}"
    elif origin is dict or tp is dict:
        text = "mapping"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        text = "mapping (a section)"
    else:
        text = getattr(tp, "__name__", str(tp))
    return f"{text} {bounds}" if bounds and origin is not list else text


def default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its defaults"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return ", ".join(v.model_dump(exclude_defaults=True).get("name", "?") for v in value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    return repr(value)


def render() -> str:
    out = [
        "# Suite reference",
        "",
        "Every key of a suite file, generated from the suite models by "
        "`python tools/suite_reference.py --write` (tests/test_docs.py fails when this file "
        "is stale). Unknown keys and wrong types are errors; `halbench validate SUITE` checks "
        "a file without training. The shipped suites under suites/ are worked examples.",
        "",
    ]
    missing = []
    for heading, model in _models():
        comments = field_comments(model)
        out += [f"## {heading}", ""]
        if model.__doc__ and model.__module__.startswith("halbench.suite.tune"):
            out += [inspect.cleandoc(model.__doc__).split("\n\n")[0].replace("\n", " "), ""]
        out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            text = DESCRIPTIONS.get(f"{model.__name__}.{name}") or comments.get(name, "")
            if not text:
                missing.append(f"{model.__name__}.{name}")
            cells = [f"`{name}`", type_text(field.annotation, field.metadata)]
            cells += [f"`{default_text(field)}`", text]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    if missing:
        raise ValueError(f"suite keys without a description: {', '.join(missing)}")
    return "\n".join(out)


def stale_descriptions() -> list[str]:
    """DESCRIPTIONS entries whose key no longer exists."""
    keys = {f"{m.__name__}.{f}" for _, m in _models() for f in m.model_fields}
    return sorted(set(DESCRIPTIONS) - keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    mode.add_argument("--write", action="store_true", help="rewrite the file")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OUTPUT.write_text(text, encoding="utf-8")
    elif args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != text:
            print("docs/suite-reference.md is stale: python tools/suite_reference.py --write")
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run from a checkout: this tree's halbench, not another
    sys.exit(main())

"""A hostile-suite corpus: mutations of suites/smoke.yaml, each with its expected outcome.

    cases = build_corpus(workdir)  # [(name, text_or_path, expected_valid), ...]
    for i, (name, item, expected_valid) in enumerate(cases):
        path = case_path(workdir, i, item)  # text is written to a file, paths are kept

A `str` is the suite file's text (the caller writes it to a file); a `Path` is a file made here
(special, unreadable or huge files). Expectations are what `halbench.suite.load_suite` must do:
valid suites load, every other one is refused with one line naming the file. Used by
tests/hostile/test_corpus.py and reusable by a `halbench validate` corpus run.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "suites" / "smoke.yaml"

Case = tuple[str, "str | Path", bool]

HUGE_INT = 10**400
BOMB = 'x: &a ["l","l","l","l","l","l","l","l","l"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)

# Values wrong for any field of their kind (the kinds of SCALARS below).
BAD_COMMON: list[Any] = [None, [1], {"a": 1}, "abc"]
BAD_NUMBER: list[Any] = [float("nan"), float("inf"), float("-inf"), HUGE_INT, -HUGE_INT, True]

# field path -> (valid values, invalid values) on top of smoke.yaml's values.
SCALARS: dict[str, tuple[list[Any], list[Any]]] = {
    "train.epochs": ([1, 3, 10**9], [0, -1, 2.5, "2", "1e9", *BAD_NUMBER, *BAD_COMMON]),
    "train.lr": (
        [0.1, 1, "1e-3", 1e-8],
        [0, -0.1, "1e400", "fast", *BAD_NUMBER, *BAD_COMMON[:3]],
    ),
    "train.weight_decay": ([0, 0.0, 1e-4], [-1e-4, *BAD_NUMBER, *BAD_COMMON]),
    "train.momentum": ([0.0, 0.5, 0.99], [1.0, -0.1, 2, *BAD_NUMBER, *BAD_COMMON]),
    "train.warmup_epochs": ([0, 1, 2, 0.5], [3, 1e29, -1, *BAD_NUMBER, *BAD_COMMON]),
    "train.loss_lr_mult": ([0.1, 10], [0, -1, *BAD_NUMBER, *BAD_COMMON]),
    "train.gamma": ([0.5, 1.0], [0, 1.5, *BAD_NUMBER]),
    "train.step_size": ([1, 30], [0, -3, 2.5, HUGE_INT]),
    "train.max_steps_per_epoch": ([None, 1, 100], [0, -1, 1.5, HUGE_INT]),
    "train.optimizer": (["sgd", "adamw"], ["rmsprop", "", 1, None]),
    "train.schedule": (["cosine", "step", "constant"], ["linear", 0]),
    "train.augment": (["auto", True, False], ["yes", 1, None]),
    "train.device": (["auto", "cpu", "cuda"], ["tpu", "cuda:0", 0]),
    "train.nesterov": ([True, False], ["yes", 1, None]),
    "train.amp": ([False], ["true", 0]),
    "train.compile": ([False], ["no"]),
    "eval.batch_size": ([1, 4096], [0, -1, 2.5, HUGE_INT]),
    "eval.metric": (["auto", "cosine", "l2"], ["dot", 2]),
    "eval.weighted": ([True], ["true"]),
    "probes.every_n_steps": ([1, 1000], [0, -1, HUGE_INT, "4"]),
    "probes.repeats": ([1, 10**9], [0, "1e9", 1e9, HUGE_INT]),
    "probes.warmup": ([0, 5], [-1, 0.5]),
    "probes.enabled": ([False], ["off"]),
    "resources.cpus_per_trial": ([0.5, 2, 1000], [0, -1, "1", *BAD_NUMBER]),
    "resources.gpus_per_trial": ([0, 0.25, 1, 2], [1.5, -1, *BAD_NUMBER]),
    "resources.memory_gb": ([None, 0.5, 4], [0, -2, *BAD_NUMBER]),
    "resources.max_concurrent": ([None, 1, 8], [0, -1, 1.5]),
    "resources.exclusive_gpu": ([True], ["y"]),
    "name": (
        ["smoke-2", "a.b_c", "x" * 100],
        ["", "bad name", "../x", "x/y", ".hidden", "ünï", "x" * 101, 123, None, [1]],
    ),
    "description": (
        ["", "ünïcödé ✓ 🚀 مرحبا", "x" * 200_000, "line\nbreak"],
        [123, None, ["a"], {"a": 1}],
    ),
    "dataset.name": (["synthetic"], ["imagenet22k", "", 5, None, "x" * 10_000]),
    "dataset.train_size": ([64, 512, 4096], [0, -1, 63, 9, 10**11, HUGE_INT, 2.5, "512"]),
    "dataset.test_size": ([1, 10_000], [0, -1, 10**12, "256"]),
    "dataset.root": ([None, "/nonexistent", "~/data"], [1, ["a"]]),
    "dataset.download": ([False, True], ["yes", 1]),
    "dataset.params.num_classes": ([2, 10, 512], [0, 1, 513, 600, 10**9, 2.5, "4", *BAD_NUMBER]),
    "dataset.params.image_size": ([8, 32], [0, 3, 4, 10**6, "16", 16.0, HUGE_INT]),
    "dataset.params.channels": ([1, 3], [0, -1, 100_000, 1.5]),
    "dataset.params.noise": ([0, 0.5, 10], [-1, "x", *BAD_NUMBER]),
    "dataset.params.pattern_seed": ([0, 7], [-1, 1.5]),
    "dataset.params.colour": ([], [True]),
    "model.backbone": (["small_cnn", "resnet18_cifar"], ["vgg99", 5, None]),
    "model.params.width": ([4, 16], [0, -1, "8", 2.5, 10**9, *BAD_NUMBER]),
    "model.params.head_bn": ([True], ["yes"]),
    "model.params.bogus": ([], [1]),
    "grid.batch_size": (
        [[32, 64], [1], [512]],
        [[], [0], [-1], [64, 64], [513], [10**6], [10**30], ["64"], [2.5], 64, [None]],
    ),
    "grid.embedding_dim": ([[8, 16], [1]], [[0], [10**9], [10**30], [8, 8], "16"]),
    "grid.seed": (
        [[0], [2**63 - 1], [0, 1, 2]],
        [[-1], [2**63], [2**64], [0, 0], [1.5], ["0"], []],
    ),
    "eval.ks": ([[1], [1, 5, 10, 100], [512], [10, 1]], [[513], [10**9], [0], [], [5, 5], 5]),
    "epochs": ([], [3]),
    "train.epoch": ([], [3]),
}

GOOD_LOSSES: list[list[dict[str, Any]]] = [
    [{"name": "hal"}],
    [{"name": "hal", "params": {"scale": 16.0}}],
    [{"name": "hal", "label": "hal-s16"}, {"name": "hal", "label": "hal-s32"}],
    [{"name": "hal", "label": "A" * 64}],
    [{"name": "hal", "label": "x.y_z-1"}],
    [{"name": "pml:TripletMarginLoss:margin=0.1"}],
    [{"name": "pml:NTXentLoss", "label": "ntxent"}],
    [{"name": "pml:ContrastiveLoss:pos_margin=0,neg_margin=1"}],
    [{"name": "pml:ArcFaceLoss", "label": "arc"}],
    [{"name": "pml:ProxyAnchorLoss"}],
    [{"name": "pml:LargeMarginSoftmaxLoss:margin=4", "label": "lsoftmax"}],
    [{"name": "pml:MultiSimilarityLoss", "params": {"alpha": 2.0}}],
]
BAD_LOSSES: list[Any] = [
    [],
    "hal",
    ["hal"],
    [{"name": "hall"}],
    [{"name": 5}],
    [{"label": "x"}],
    [{"name": "hal", "extra": 1}],
    [{"name": "hal"}, {"name": "hal"}],
    [{"name": "hal", "params": {"scale": -1.0}}],
    [{"name": "hal", "params": {"scale": float("nan")}}],
    [{"name": "hal", "params": {"scale": float("inf")}}],
    [{"name": "hal", "params": {"scale": HUGE_INT}}],
    [{"name": "hal", "params": {"scale": "16"}}],
    [{"name": "hal", "params": {"bogus": 1}}],
    [{"name": "nca", "params": {"temprature": 1.0}}],
    *[
        [{"name": "hal", "label": bad}]
        for bad in [
            "/../../../../tmp/ESCAPED",
            "a/b",
            "..",
            ".hidden",
            "a\x00b",
            "a\nb",
            "",
            "A" * 65,
            "A" * 300,
            "ü",
            "a b",
            5,
            "../x",
            "x/../y",
        ]
    ],
    *[
        [{"name": f"pml:{spec}", "label": "p"}]
        for spec in [
            "LargeMarginSoftmaxLoss:margin=1e9",
            "LargeMarginSoftmaxLoss:margin=0",
            "TripletMarginLoss:margin=-5",
            "ContrastiveLoss:pos_margin=abc",
            "NTXentLoss:temperature=0",
            "MultiSimilarityLoss:alpha=nan",
            "ArcFaceLoss:scale=1e999",
            "TripletMarginLoss:margin=0.1,margin=0.2",
            "BaseMetricLossFunction",
            "GenericPairLoss",
            "MultipleLosses",
            "Nope",
            "",
            "TripletMarginLoss:margin",
            "TripletMarginLoss:1x=2",
            "SoftTripleLoss:centers_per_class=1000000000",
            "TripletMarginLoss:margin=" + "9" * 500,
        ]
    ],
    [{"name": "pml:TripletMarginLoss", "params": {"margin": float("nan")}, "label": "p"}],
    [{"name": "pml:TripletMarginLoss:margin=0.1", "params": {"margin": 0.2}}],
    [{"name": "pml:TripletMarginLoss:margin=/etc/passwd"}],
]

# Raw YAML text (duplicates, aliases, nesting, tags, encodings); {smoke...} are filled in.
TEXT_VALID: dict[str, str] = {
    "comments only around": "# c\n{smoke}\n# end\n",
    "bom": "\ufeff{smoke}",
    "explicit document": "---\n{smoke}\n...\n",
}

TEXT_INVALID: dict[str, str] = {
    "empty file": "",
    "whitespace only": "   \n\n",
    "comments only": "# nothing\n",
    "null document": "null\n",
    "a list": "- a\n- b\n",
    "a scalar": "smoke\n",
    "two documents": "{smoke}\n---\nname: b\n",
    "duplicate top-level key": "{smoke}\nname: again\n",
    "duplicate nested key": "{smoke_no_train}\ntrain: {epochs: 2, epochs: 3}\n",
    "duplicate param key": "{smoke_no_model}\nmodel: {params: {width: 8, width: 9}}\n",
    "alias bomb in description": "{smoke_no_desc}\n{bomb_desc}",
    "alias bomb in name": "{smoke_no_name}\n{bomb}name: *i\n",
    "alias bomb in model.params": "{smoke_no_model}\n{bomb}model: {params: {w: *i}}\n",
    "alias bomb in label": "{smoke_no_losses}\n{bomb}losses: [{name: hal, label: *i}]\n",
    "alias bomb in grid.seed": "{smoke_no_grid}\n{bomb}"
    "grid: {batch_size: [64], embedding_dim: [16], seed: *i}\n",
    "alias bomb in epochs": "{smoke_no_train}\n{bomb}train: {epochs: *i}\n",
    "alias bomb in cpus": "{smoke_no_resources}\n{bomb}resources: {cpus_per_trial: *i}\n",
    "big alias": "{smoke_no_desc}\nbig: &big [{big}]\ndescription: [*big, *big]\n",
    "recursive alias": "{smoke_no_model}\nmodel: &m {params: {w: *m}}\n",
    "recursive alias in list": "{smoke_no_desc}\ndescription: &r [1, *r]\n",
    "undefined alias": "{smoke_no_desc}\ndescription: *nope\n",
    "deep flow mapping": "{smoke_no_desc}\ndescription: " + "{a: " * 100_000 + "1" + "}" * 100_000,
    "deep flow sequence": "{smoke_no_desc}\ndescription: " + "[" * 100_000 + "]" * 100_000,
    "deep block nesting": "{smoke_no_desc}\ndescription:\n"
    + "".join("  " * i + "- \n" for i in range(1, 200)),
    "python tag": "{smoke_no_desc}\ndescription: !!python/object/apply:os.system [echo]\n",
    "binary tag": "{smoke_no_name}\nname: !!binary aGVsbG8=\n",
    "timestamp name": "{smoke_no_name}\nname: 2020-01-01\n",
    "lr 1e400 text": "{smoke_no_train}\ntrain: {lr: 1e400}\n",
    "lr .inf": "{smoke_no_train}\ntrain: {lr: .inf}\n",
    "noise .nan": "{smoke_no_dataset}\n"
    "dataset: {name: synthetic, train_size: 512, params: {noise: .nan}}\n",
    "epochs 1e9 text": "{smoke_no_train}\ntrain: {epochs: 1e9}\n",
    "unclosed": "{smoke}\nname: [unclosed\n",
    "tab indentation": "name: smoke\n\tdescription: x\n",
    "control character": '{smoke_no_desc}\ndescription: "a\x07b"\n',
    "unhashable key": "{smoke}\n? [a, b]\n: 1\n",
    "both dataset and datasets": "{smoke}\ndatasets: [{name: synthetic}]\n",
    "two equal datasets": "{smoke_no_dataset}\ndatasets: [{name: synthetic}, {name: synthetic}]\n",
}


def _fill(template: str, fill: dict[str, str]) -> str:
    """Replace {key} for the keys of fill only (the YAML itself is full of braces)."""
    for key, value in fill.items():
        template = template.replace("{" + key + "}", value)
    return template


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    *parents, leaf = dotted.split(".")
    if parents and parents[0] in ("train", "eval", "probes", "resources"):
        out.setdefault(parents[0], {})
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def _without(data: dict[str, Any], *keys: str) -> str:
    return _dump({k: v for k, v in data.items() if k not in keys})


def _text_cases(smoke: dict[str, Any]) -> list[Case]:
    fill = {
        "smoke": _dump(smoke),
        "bomb": BOMB,
        "bomb_desc": BOMB + "description: *i\n",
        "big": ",".join(["0"] * 20_000),
        **{
            f"smoke_no_{k}": _without(smoke, k)
            for k in ("train", "model", "name", "losses", "grid", "resources", "dataset")
        },
        "smoke_no_desc": _without(smoke, "description"),
    }
    cases: list[Case] = [
        (f"text: {name}", _fill(text, fill), True) for name, text in TEXT_VALID.items() if text
    ]
    alias = "grid: {batch_size: [&b 64], embedding_dim: [16], seed: [0, 1]}\n"
    alias += "eval: {ks: [1, 5, 10], batch_size: *b}\n"
    cases.append(("text: anchors and aliases", _without(smoke, "grid", "eval") + alias, True))
    merge = "train: {<<: {epochs: 2, lr: 0.01}, lr: 0.003}\n"
    cases.append(("text: merge key", _without(smoke, "train") + merge, True))
    for name, text in TEXT_INVALID.items():
        cases.append((f"text: {name}", _fill(text, fill), False))
    return cases


def _file_cases(workdir: Path, smoke_text: str) -> list[Case]:
    workdir.mkdir(parents=True, exist_ok=True)
    out: list[Case] = []

    def write(name: str, content: bytes) -> Path:
        path = workdir / name
        path.write_bytes(content)
        return path

    good = write("good.yaml", smoke_text.encode())
    out.append(("file: plain copy", good, True))
    link = workdir / "link.yaml"
    link.unlink(missing_ok=True)
    link.symlink_to(good)
    out.append(("file: symlink to a suite", link, True))
    dangling = workdir / "dangling.yaml"
    dangling.unlink(missing_ok=True)
    dangling.symlink_to(workdir / "nowhere.yaml")
    out.append(("file: dangling symlink", dangling, False))
    out.append(("file: missing", workdir / "missing.yaml", False))
    (workdir / "a-directory.yaml").mkdir(exist_ok=True)
    out.append(("file: a directory", workdir / "a-directory.yaml", False))
    fifo = workdir / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    out.append(("file: a FIFO", fifo, False))
    out.append(("file: /dev/null", Path("/dev/null"), False))
    out.append(("file: /dev/zero", Path("/dev/zero"), False))
    out.append(("file: /proc/self/mem", Path("/proc/self/mem"), False))
    out.append(("file: /proc/self/status", Path("/proc/self/status"), False))
    out.append(("file: /proc/self/environ", Path("/proc/self/environ"), False))
    out.append(("file: 2 MB of comments", write("big.yaml", b"# x\n" * 500_000), False))
    out.append(
        (
            "file: a suite then 5 MB",
            write("huge.yaml", smoke_text.encode() + b"#" * 5_000_000),
            False,
        )
    )
    out.append(
        ("file: latin-1", write("latin1.yaml", "description: caf\xe9\n".encode("latin-1")), False)
    )
    out.append(("file: utf-16", write("utf16.yaml", smoke_text.encode("utf-16")), False))
    out.append(("file: NUL bytes", write("nul.yaml", b"name: a\x00b\n"), False))
    out.append(("file: random bytes", write("random.yaml", bytes(range(256)) * 4), False))
    if os.geteuid() != 0:  # root reads mode-000 files: the check does not apply
        locked = write("locked.yaml", smoke_text.encode())
        locked.chmod(0)
        out.append(("file: mode 000", locked, False))
        closed = workdir / "closed"
        closed.mkdir(exist_ok=True)
        (closed / "s.yaml").write_text(smoke_text)
        closed.chmod(0)
        out.append(("file: in a mode-000 directory", closed / "s.yaml", False))
    return out


def case_path(workdir: Path, index: int, item: str | Path) -> Path:
    """The file to load for a case: text is written to workdir/case-NNN.yaml, paths as given."""
    if isinstance(item, Path):
        return item
    path = workdir / f"case-{index:03d}.yaml"
    path.write_text(item, encoding="utf-8")
    return path


def build_corpus(workdir: Path) -> list[Case]:
    """Every case as (name, suite text or file path, expected_valid); files go in workdir."""
    smoke = yaml.safe_load(SMOKE.read_text())
    cases: list[Case] = [("smoke as shipped", SMOKE.read_text(), True)]
    for field, (good, bad) in SCALARS.items():
        for expected, values in ((True, good), (False, bad)):
            for value in values:
                text = _dump(_set(smoke, field, value))
                cases.append((f"{field} = {_label(value)}", text, expected))
    for field in ("name", "dataset", "losses", "grid", "grid.seed"):
        data = copy.deepcopy(smoke)
        if "." in field:
            del data["grid"]["seed"]
        else:
            del data[field]
        cases.append((f"missing {field}", _dump(data), False))
    for field in ("description", "model", "train", "eval", "probes", "resources"):
        cases.append((f"missing {field} (defaults)", _without(smoke, field), True))
    for i, losses in enumerate(GOOD_LOSSES):
        cases.append((f"losses good #{i}", _dump({**smoke, "losses": losses}), True))
    for i, losses in enumerate(BAD_LOSSES):
        cases.append(
            (f"losses bad #{i}: {_label(losses)}", _dump({**smoke, "losses": losses}), False)
        )
    cases += _text_cases(smoke)
    cases += _file_cases(workdir, SMOKE.read_text())
    seen: dict[str, int] = {}
    unique: list[Case] = []
    for name, item, expected in cases:  # truncated labels can collide
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name} #{seen[name]}", item, expected))
    return unique


def _label(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."

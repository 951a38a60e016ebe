"""The tuning protocol's groups, seeds, ids and planned configurations (protocol.py runs them).

A group is one budget: dataset x loss x the grid point left as an axis x the tuning replicate.
Replicate r has its own search seed (search_seed), training seed (tuning_seeds, never a final
seed) and validation split (the data layer's validation_seed = r; 0 is the split of a run
before replicates existed). With tune.replicates = 1 keys and ids are those of such a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from halbench.suite import DatasetConfig, LossSpec, Suite, TrialSpec
from halbench.suite.tune import GRID_KEYS, LOSS_PREFIX, Dist, sample_configs
from halbench.suite.tune_checks import suite_space


@dataclass(frozen=True)
class Group:
    """One budget: the tuning trials of a dataset, a loss and a grid point."""

    key: str  # dataset/loss/b<B>/d<d>[/r<replicate>] (a tuned axis is left out)
    slug: str  # the same, file-safe, for trial ids
    dataset: DatasetConfig  # a replicate r > 0 carries params.validation_seed = r
    loss: LossSpec
    batch_size: int
    embedding_dim: int
    space: dict[str, Dist]
    replicate: int = 0
    base: str = ""  # the key without the replicate: the sampler's stream is base x search seed


def groups(suite: Suite, datasets: tuple[str, ...] | None = None) -> list[Group]:
    """The suite's groups in run order: dataset x loss x remaining grid point."""
    space = suite_space(suite)
    tuned = space.tuned_axes()
    bs = suite.grid.batch_size[:1] if "batch_size" in tuned else suite.grid.batch_size
    dims = suite.grid.embedding_dim[:1] if "embedding_dim" in tuned else suite.grid.embedding_dim
    out = []
    for ds in suite.datasets:
        if datasets and ds.name not in datasets:
            continue
        for loss in suite.losses:
            for b in bs:
                for d in dims:
                    parts = [ds.name, loss.display]
                    parts += [] if "batch_size" in tuned else [f"b{b}"]
                    parts += [] if "embedding_dim" in tuned else [f"d{d}"]
                    out += _replicates(suite, parts, ds, loss, b, d, space.for_loss(loss.display))
    return out


def _replicates(
    suite: Suite, parts: list[str], ds: DatasetConfig, loss: LossSpec, b: int, d: int,
    space: dict[str, Dist],
) -> list[Group]:  # fmt: skip
    """A grid point's R groups; with R = 1 one group named as before replicates existed."""
    assert suite.tune is not None
    n = suite.tune.replicates
    out = []
    for r in range(n):
        tail = [f"r{r}"] if n > 1 else []
        # The data layer draws replicate r's validation split (0: today's split).
        params = {**ds.params, "validation_seed": r}
        data = ds if r == 0 else ds.model_copy(update={"params": params})
        key = "/".join(parts + tail)
        out.append(Group(key, "-".join(parts + tail), data, loss, b, d, space, r, "/".join(parts)))
    return out


def search_seed(suite: Suite, group: Group) -> int:
    """The seed of a group's searcher: tune.seed for replicate 0, one more per replicate."""
    assert suite.tune is not None
    return (suite.tune.seed + group.replicate) % 2**32


def default_config(suite: Suite, group: Group) -> dict[str, Any]:
    """The hand-set configuration: the suite's own value of every tuned key."""
    from halbench import losses

    out: dict[str, Any] = {}
    for key in group.space:
        if key in GRID_KEYS:
            out[key] = getattr(group, key)
        elif key.startswith(LOSS_PREFIX):
            param = key[len(LOSS_PREFIX) :]
            if param in group.loss.params:
                out[key] = group.loss.params[param]
            else:
                try:
                    value = losses.parameters(group.loss.name).get(param)
                except (KeyError, ValueError):
                    value = None
                if isinstance(value, bool | int | float | str):
                    out[key] = value
        else:
            out[key] = getattr(suite.train, key)
    return out


def tuning_id(group: Group, index: int) -> str:
    return f"tune-{group.slug}-t{index:03d}"


def final_id(group: Group, seed: int) -> str:
    return f"final-{group.slug}-s{seed}"


def tuning_seeds(suite: Suite) -> list[int]:
    """The seed each replicate's tuning trials train with, never one of final.seeds.

    The first `tune.replicates` integers from tune.seed up that no final trial uses: a final
    trial never replays a run that won a selection, and the replicates train with different
    seeds. Replicate 0's is the seed of a run before replicates existed.
    """
    assert suite.tune is not None
    finals = set(suite.final.seeds) if suite.final is not None else set()
    seeds: list[int] = []
    seed = suite.tune.seed
    while len(seeds) < suite.tune.replicates:
        if seed not in finals:
            seeds.append(seed)
        seed += 1
    return seeds


def tuning_seed(suite: Suite, replicate: int = 0) -> int:
    """The seed the tuning trials of `replicate` train with (tuning_seeds)."""
    return tuning_seeds(suite)[replicate]


def protocol_seeds(suite: Suite) -> dict[str, list[int]]:
    """The run's two seed sets, as env.json records them (disjoint)."""
    assert suite.tune is not None
    finals = list(suite.final.seeds) if suite.final is not None else []
    return {"tuning": tuning_seeds(suite), "final": finals}


def tuning_spec(suite: Suite, group: Group, index: int, config: dict[str, Any]) -> TrialSpec:
    assert suite.tune is not None
    return TrialSpec(
        trial_id=tuning_id(group, index),
        dataset=group.dataset,
        loss=group.loss,
        batch_size=group.batch_size,
        embedding_dim=group.embedding_dim,
        seed=tuning_seed(suite, group.replicate),  # one per replicate: configurations differ
        phase="tune",
        overrides=config,
    )


def planned_configs(suite: Suite, group: Group) -> list[dict[str, Any]]:
    """The budget's configurations: the hand-set one, then the seeded samples (random search)."""
    assert suite.tune is not None
    rest = sample_configs(
        group.space, suite.tune.budget - 1, seed=search_seed(suite, group), group=group.base
    )
    return [default_config(suite, group), *rest]

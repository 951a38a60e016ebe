"""Evaluation of a trial's embeddings: embed whole splits, score them with k-NN.

The reference set is the training split; the queries are the evaluation split: the test split,
or the validation split of a tuning trial (halbench.data's phases).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from halbench import data, knn
from halbench.failures import Diverged
from halbench.suite import EvalConfig

# Embedding batch of eval.batch_size "auto": on a CPU a batch whose activations stay in cache
# (1024 and 2048 were 2-3x slower per image than 128-256 on small_cnn here); on a GPU a large
# one, halved on out-of-memory.
AUTO_EVAL_BATCH = {"cpu": 256, "cuda": 4096}
# The batch that last fitted per model: an out-of-memory back-off is paid once per trial.
_FITTED_EVAL_BATCH: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def eval_batch_size(batch_size: int | str, device: torch.device) -> int:
    """eval.batch_size as a number: "auto" -> AUTO_EVAL_BATCH of the device type."""
    if batch_size == "auto":
        return AUTO_EVAL_BATCH.get(device.type, AUTO_EVAL_BATCH["cuda"])
    return int(batch_size)


def embed(
    model: nn.Module,
    splits: data.Splits,
    split: str,
    batch_size: int | str,
    *,
    amp: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Embeddings of a whole split in eval mode, without augmentation, in row order.

    In inference mode (no autograd bookkeeping). On CUDA an out-of-memory batch is halved and
    the split embedded again; the batch size that fitted is kept for the model's next calls.
    In eval mode the embeddings do not depend on the batch size.
    """
    model.eval()
    device = splits.train_x.device
    size = min(eval_batch_size(batch_size, device), _FITTED_EVAL_BATCH.get(model, 2**62))
    while True:
        try:
            with torch.inference_mode():
                out = []
                for x, _, _ in splits.batches(split, size, shuffle=False, augment=False):
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                        out.append(model(x).float())
                return torch.cat(out)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            out = []  # drop the partial split's embeddings before freeing the cache
            torch.cuda.empty_cache()
            size = max(1, size // 2)
            _FITTED_EVAL_BATCH[model] = size


def evaluates(epoch: int, epochs: int, every_n_epochs: int) -> bool:
    """Whether epoch `epoch` of `epochs` is evaluated: every n-th, and always the last."""
    return epoch == epochs or epoch % every_n_epochs == 0


def evaluate_model(
    model: nn.Module,
    loss_fn: nn.Module,
    splits: data.Splits,
    metric: str,
    ecfg: EvalConfig,
    *,
    final: bool,
    amp: bool = False,
    channels_last: bool = False,
    keep: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """k-NN accuracies (and anchor accuracy); the final epoch adds p_at_1 and MAP@R. `keep`,
    when given, receives the evaluation split's embeddings (eval.save_embeddings)."""
    ks = list(ecfg.ks)
    kw = {"amp": amp, "channels_last": channels_last}
    train_emb = embed(model, splits, "train", ecfg.batch_size, **kw)
    # "eval": the test split, or the validation split of a tuning trial.
    test_emb = embed(model, splits, "eval", ecfg.batch_size, **kw)
    if not (torch.isfinite(train_emb).all() and torch.isfinite(test_emb).all()):
        raise Diverged("embeddings became NaN or infinite")
    if keep is not None:
        keep(test_emb)
    # Inference mode throughout: the embeddings are inference tensors, and nothing here trains.
    with torch.inference_mode():
        anchors = loss_fn.anchors() if getattr(loss_fn, "has_anchors", False) else None
        both = (train_emb, splits.train_y, test_emb, splits.eval_y)
        if final:
            kw_final = {"anchors": anchors, "weighted": ecfg.weighted}
            return knn.embedding_metrics(*both, ks=ks, metric=metric, **kw_final)
        accs = knn.knn_accuracy(*both, ks=ks, metric=metric, weighted=ecfg.weighted)
        out: dict[str, Any] = {f"knn_acc_{k}": a for k, a in accs.items()}
        out["anchor_acc"] = (
            knn.anchor_accuracy(anchors, test_emb, splits.eval_y, metric=metric)
            if anchors is not None
            else None
        )
    return out

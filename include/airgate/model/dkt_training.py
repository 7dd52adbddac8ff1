"""DKT's training loop: truncated backpropagation through time, early stopping on validation log-loss.

Deterministic for given data and parameters (a release gate): seeded generators and ``dkt.torch_settings``. The random
draws happen in one fixed order (each epoch's permutation, then each batch's hidden items), which is what makes two
fits of the same configuration agree. Heavy modules are imported inside the functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airgate.model.dkt import DKTModel, DKTNet, predict_logits, torch_settings
from airgate.model.dkt_encoding import OOV, DKTParams, Encoded, Vocab, encode, make_batch

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

OOV_RATE = 0.02  # share of training events whose item/skill is hidden, to train the unknown-item embedding
MIN_IMPROVEMENT = 1e-6  # a smaller drop of the validation loss does not count as progress


@dataclass(frozen=True)
class _Data:
    """The encoded training students and the validation students (``vy`` is None without any)."""

    vocab: Vocab
    enc: Encoded
    y: np.ndarray
    venc: Encoded | None
    vy: np.ndarray | None

    @property
    def has_valid(self) -> bool:
        """Whether any validation row has a target: otherwise early stopping watches the training loss."""
        import numpy as np

        return self.vy is not None and bool((~np.isnan(self.vy)).any())


def _training_data(
    history: pd.DataFrame, targets: pd.DataFrame, train_students: set[str], valid_students: set[str]
) -> _Data:
    """Vocabularies from the training students only (the rest is out of vocabulary), then both sets encoded."""
    import numpy as np

    sid = history["student_id"].astype(str)
    train_hist = history[sid.isin(train_students)]
    valid_hist = history[sid.isin(valid_students)]
    if len(train_hist) == 0:
        raise ValueError("DKT fit: no history rows for the training students")
    vocab = Vocab(
        sorted(train_hist["item_id"].astype(str).unique()),
        sorted(train_hist["skill_id"].astype(str).unique()),
    )
    enc = encode(train_hist, vocab)
    y = _targets(enc, targets, train_students)
    if np.isnan(y).all():
        raise ValueError("DKT fit: none of the training students' rows has a target")
    venc = encode(valid_hist, vocab) if len(valid_hist) else None
    vy = _targets(venc, targets, valid_students) if venc is not None else None
    return _Data(vocab, enc, y, venc, vy)


def _targets(enc: Encoded, targets: pd.DataFrame, students: set[str]) -> np.ndarray:
    """Label per sorted row, NaN where the row is not a target of this student set."""
    import numpy as np
    import pandas as pd

    label = pd.Series(
        targets["label"].to_numpy(dtype="float64"), index=targets["event_id"].astype(str).to_numpy()
    )
    label = label[~label.index.duplicated(keep="last")]
    y = label.reindex(enc.event_ids).to_numpy(dtype="float64")
    in_set = pd.Index(enc.student_ids).isin(list(students))
    y[~np.repeat(in_set, enc.lengths)] = np.nan
    return y


def _valid_loss(net: DKTNet, enc: Encoded, y: np.ndarray) -> float:
    """Mean validation log-loss, the early-stopping signal."""
    import numpy as np

    keep = ~np.isnan(y)
    if not keep.any():
        return float("nan")
    z = predict_logits(net, enc)[keep]
    t = y[keep]
    # log-loss from logits, stable for large |z|
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


class _EarlyStopping:
    """Keeps the weights of the best epoch; says stop after ``patience`` epochs without progress."""

    def __init__(self, net: DKTNet, patience: int) -> None:
        self.patience = patience
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_state = _snapshot(net)
        self.stale = 0

    def should_stop(self, epoch: int, loss: float, net: DKTNet) -> bool:
        if loss < self.best_loss - MIN_IMPROVEMENT:
            self.best_loss, self.best_epoch, self.best_state = loss, epoch, _snapshot(net)
            self.stale = 0
            return False
        self.stale += 1
        return self.stale >= self.patience


def _snapshot(net: DKTNet) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def fit(
    history: pd.DataFrame,
    targets: pd.DataFrame,
    train_students: set[str],
    valid_students: set[str],
    params: DKTParams,
) -> DKTModel:
    """Train on train_students' targeted rows; early-stop on valid_students' log-loss.

    The labels come from ``targets`` (late grades included), while the inputs are ``history.correct`` as it was
    known: training sees the same inputs that scoring will.
    """
    import numpy as np
    import torch

    data = _training_data(
        history, targets, {str(s) for s in train_students}, {str(s) for s in valid_students}
    )
    rng = np.random.default_rng(params.seed)
    with torch_settings(params.threads, params.seed):
        net = DKTNet(len(data.vocab.items), len(data.vocab.skills), params)
        opt = torch.optim.Adam(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        # Only students with at least one target are worth a forward pass.
        pool = np.flatnonzero(np.add.reduceat((~np.isnan(data.y)).astype(np.int64), data.enc.starts) > 0)
        stopping = _EarlyStopping(net, params.patience)
        log: list[dict[str, Any]] = []
        for epoch in range(1, params.epochs + 1):
            t0 = time.perf_counter()
            train_loss = _train_epoch(net, opt, data, pool, params, rng)
            valid_loss = (
                _valid_loss(net, data.venc, data.vy)
                if data.has_valid and data.venc is not None and data.vy is not None
                else train_loss
            )
            log.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "valid_loss": valid_loss if data.has_valid else None,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            if stopping.should_stop(epoch, valid_loss, net):
                break
        net.load_state_dict(stopping.best_state)
        net.eval()
    return DKTModel(net, data.vocab, params, best_epoch=stopping.best_epoch, history=log)


def _train_epoch(
    net: DKTNet,
    opt: torch.optim.Optimizer,
    data: _Data,
    pool: np.ndarray,
    params: DKTParams,
    rng: np.random.Generator,
) -> float:
    """One pass over the targeted training students in a seeded order; returns the mean training log-loss."""
    net.train()
    loss_sum, n_sum = 0.0, 0
    perm = pool[rng.permutation(len(pool))]
    for s in range(0, len(perm), params.batch_size):
        batch_loss, batch_n = _train_batch(
            net, opt, data.enc, data.y, perm[s : s + params.batch_size], params, rng
        )
        loss_sum, n_sum = loss_sum + batch_loss, n_sum + batch_n
    return loss_sum / max(n_sum, 1)


def _train_batch(
    net: DKTNet,
    opt: torch.optim.Optimizer,
    enc: Encoded,
    y: np.ndarray,
    students: np.ndarray,
    params: DKTParams,
    rng: np.random.Generator,
) -> tuple[float, int]:
    """One optimiser step over a batch of students; returns (summed log-loss, targeted rows)."""
    import numpy as np
    import torch
    from torch import nn

    b = make_batch(enc, students)
    yb = np.where(b.mask, y[b.idx], np.nan)
    item, skill = b.item.clone(), b.skill.clone()
    # Hide a few items/skills (input and query alike: it is one event) so the unknown index gets trained.
    item[torch.from_numpy(rng.random(item.shape) < OOV_RATE)] = OOV
    skill[torch.from_numpy(rng.random(skill.shape) < OOV_RATE)] = OOV
    opt.zero_grad()
    n_total = int((~np.isnan(yb)).sum())
    loss_sum = 0.0
    h: torch.Tensor | None = None
    length = item.shape[1]
    # Truncated backpropagation through time: chunks of max_len steps, the state carried over detached, each
    # chunk's gradient accumulated at once so that no graph spans more than max_len steps.
    for c0 in range(0, length, params.max_len):
        c1 = min(length, c0 + params.max_len)
        first = b.first[:, c0:c1] - c0
        yc = yb[:, c0:c1].copy()
        # A row whose tie group began in an earlier chunk would need a state that is gone: no target for it.
        yc[(first < 0).numpy()] = np.nan
        keep = torch.from_numpy(~np.isnan(yc))
        logits, h_last = net(item[:, c0:c1], skill[:, c0:c1], b.answer[:, c0:c1], first.clamp(min=0), h)
        h = h_last.detach()
        if bool(keep.any()):
            target = torch.from_numpy(np.nan_to_num(yc).astype(np.float32))
            loss = nn.functional.binary_cross_entropy_with_logits(logits[keep], target[keep], reduction="sum")
            (loss / max(n_total, 1)).backward()
            loss_sum += float(loss.detach())
    opt.step()
    return loss_sum, n_total

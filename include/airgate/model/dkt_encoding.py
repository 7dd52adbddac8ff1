"""DKT's parameters and how a history becomes the network's input: vocabularies, sorted arrays, padded batches.

Kept apart from the network (``airgate.model.dkt``) and its training loop (``airgate.model.dkt_training``) so each
module has one job. Heavy modules are imported inside the functions; the annotations name them for type checking.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

ANSWER_STATES = 3  # wrong, right, ungraded
UNGRADED = 2
OOV = 0


@dataclass(frozen=True)
class DKTParams:
    hidden_size: int = 64
    embed_dim: int = 32
    dropout: float = 0.1
    lr: float = 3e-3
    weight_decay: float = 0.0
    epochs: int = 15
    batch_size: int = 64
    max_len: int = (
        400  # training splits longer histories into chunks (state carried over); predict reads all of it
    )
    patience: int = 3  # early stopping on validation log-loss
    seed: int = 42
    threads: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DKTParams:
        """Strict, so that a typo in a spec's parameters fails the run instead of silently training defaults."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key not in fields:
                raise ValueError(f"unknown DKT parameter {key!r}; known: {', '.join(sorted(fields))}")
            kind = type(getattr(cls(), key))
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"DKT parameter {key!r} must be a number, got {value!r}") from None
            if kind is int:
                # Tuners and JSON may hand over 64.0 for an int; 64.5 is a mistake, not a rounding matter.
                if isinstance(value, bool) or number != int(number):
                    raise ValueError(f"DKT parameter {key!r} must be an integer, got {value!r}")
                kwargs[key] = int(number)
            else:
                kwargs[key] = number
        params = cls(**kwargs)
        if params.hidden_size < 1 or params.embed_dim < 1 or params.batch_size < 1 or params.max_len < 1:
            raise ValueError("DKT sizes (hidden_size, embed_dim, batch_size, max_len) must be positive")
        if params.epochs < 1 or params.patience < 1 or params.threads < 1:
            raise ValueError("DKT epochs, patience and threads must be positive")
        if not 0.0 <= params.dropout < 1.0:
            raise ValueError("DKT dropout must be in [0, 1)")
        return params


@dataclass(frozen=True)
class Vocab:
    items: list[str]  # sorted; item i has index i + 1 (0 is out of vocabulary)
    skills: list[str]

    def codes(self, values: pd.Series, which: str) -> np.ndarray:
        import numpy as np
        import pandas as pd

        vocab = self.items if which == "item" else self.skills
        idx = pd.Index(vocab).get_indexer(values.astype(str).to_numpy())
        return (idx + 1).astype(np.int64)  # get_indexer gives -1 for unknown: exactly OOV after the shift


@dataclass(frozen=True)
class Encoded:
    """One history, sorted by (student, ts, event_id), as flat arrays plus each student's slice."""

    order: np.ndarray  # order[j] = input row position of sorted row j
    event_ids: np.ndarray
    student_ids: np.ndarray  # one per student, sorted
    item: np.ndarray
    skill: np.ndarray
    answer: np.ndarray
    first: np.ndarray  # position (within the student) of the first row sharing this row's ts
    starts: np.ndarray
    lengths: np.ndarray


def encode(history: pd.DataFrame, vocab: Vocab) -> Encoded:
    """The history as sorted flat arrays: students, their events in (ts, event_id) order, and tie groups."""
    import numpy as np
    import pandas as pd

    ts = pd.to_datetime(history["ts"], utc=True).to_numpy(dtype="datetime64[ns]").view(np.int64)
    stu_codes, stu_uniques = pd.factorize(history["student_id"].astype(str), sort=True)
    ev_codes, _ = pd.factorize(history["event_id"].astype(str), sort=True)
    order = np.lexsort((ev_codes, ts, stu_codes)).astype(np.int64)
    stu = stu_codes[order]
    ts_sorted = ts[order]
    n = len(order)
    new_student = np.ones(n, dtype=bool)
    new_student[1:] = stu[1:] != stu[:-1]
    starts = np.flatnonzero(new_student).astype(np.int64)
    lengths = np.diff(np.append(starts, n)).astype(np.int64)
    new_tie = new_student.copy()
    new_tie[1:] |= ts_sorted[1:] != ts_sorted[:-1]
    first = np.maximum.accumulate(np.where(new_tie, np.arange(n), 0)) - np.repeat(starts, lengths)
    correct = pd.array(history["correct"], dtype="Int64")
    answer = np.where(pd.isna(correct), UNGRADED, correct.to_numpy(dtype="float64", na_value=0.0) > 0).astype(
        np.int64
    )
    return Encoded(
        order=order,
        event_ids=history["event_id"].astype(str).to_numpy()[order],
        student_ids=np.asarray(stu_uniques, dtype=object),
        item=vocab.codes(history["item_id"], "item")[order],
        skill=vocab.codes(history["skill_id"], "skill")[order],
        answer=answer[order],
        first=first.astype(np.int64),
        starts=starts,
        lengths=lengths,
    )


@dataclass(frozen=True)
class Batch:
    idx: np.ndarray  # (B, L) flat row index of each cell (0 where padded)
    mask: np.ndarray  # (B, L) True on real rows
    item: torch.Tensor
    skill: torch.Tensor
    answer: torch.Tensor
    first: torch.Tensor


def make_batch(enc: Encoded, students: np.ndarray) -> Batch:
    """Right-padded so that the causal GRU never reads padding before a real row."""
    import numpy as np
    import torch

    lengths = enc.lengths[students]
    steps = np.arange(int(lengths.max()), dtype=np.int64)
    mask = steps[None, :] < lengths[:, None]
    idx = np.where(mask, enc.starts[students][:, None] + steps[None, :], 0)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.where(mask, a[idx], 0))

    return Batch(idx, mask, t(enc.item), t(enc.skill), t(enc.answer), t(enc.first))

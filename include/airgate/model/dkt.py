"""Deep Knowledge Tracing (Piech et al. 2015): a GRU over each student's answers, as a training candidate.

The model reads a student's interactions in time order. The GRU's input at an event is an embedding of what the
student did there: the item and the skill, each crossed with the answer state (wrong, right, or still ungraded).
After consuming events 0..k-1 its hidden state summarises everything the student did before event k. The prediction
for event k combines that state with embeddings of event k's own item and skill (known before the student answers)
and a per-item bias, through a small MLP.

Point in time, as in ``airgate.data.features``: a row sees only the same student's events strictly earlier in time.
Events are ordered by (ts, event_id); rows that share a timestamp all read the state from before the first of them,
so they do not see each other, and a row never sees its own answer or anything later. The GRU is causal and padding
goes on the right, so batching students together cannot leak either. Ungraded earlier events are inputs (the third
answer state) but never training targets; the targets are the separately supplied labels, which may have arrived
after the event.

Items and skills the model has not seen (at predict time) map to index 0. During training a small seeded share of
events is mapped to 0 too, so that the out-of-vocabulary embedding learns "an average item" rather than staying
random.

Training is deterministic for given data and parameters (a release gate): seeded generators, sorted vocabularies,
deterministic algorithms, a fixed thread count; global torch settings are restored afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from torch import nn

ANSWER_STATES = 3  # wrong, right, ungraded
UNGRADED = 2
OOV = 0
OOV_RATE = 0.02  # share of training events whose item/skill is hidden, to train the unknown-item embedding
PREDICT_TOKENS = 262_144  # padded (student x step) cells per forward pass at predict time: bounds memory
WEIGHTS_FILE = "weights.pt"
META_FILE = "dkt.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DKTParams:
    hidden_size: int = 64
    embed_dim: int = 32
    dropout: float = 0.1
    lr: float = 3e-3
    weight_decay: float = 0.0
    epochs: int = 15
    batch_size: int = 64
    max_len: int = 400  # training splits longer histories into chunks (state carried over); predict reads all of it
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


# ---------------------------------------------------------------------------------------------------- encoding

@dataclass(frozen=True)
class _Vocab:
    items: list[str]  # sorted; item i has index i + 1 (0 is out of vocabulary)
    skills: list[str]

    def codes(self, values: pd.Series, which: str) -> np.ndarray:
        vocab = self.items if which == "item" else self.skills
        idx = pd.Index(vocab).get_indexer(values.astype(str).to_numpy())
        return (idx + 1).astype(np.int64)  # get_indexer gives -1 for unknown: exactly OOV after the shift


@dataclass(frozen=True)
class _Encoded:
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


def _encode(history: pd.DataFrame, vocab: _Vocab) -> _Encoded:
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
    answer = np.where(pd.isna(correct), UNGRADED, correct.to_numpy(dtype="float64", na_value=0.0) > 0).astype(np.int64)
    return _Encoded(
        order=order, event_ids=history["event_id"].astype(str).to_numpy()[order],
        student_ids=np.asarray(stu_uniques, dtype=object),
        item=vocab.codes(history["item_id"], "item")[order], skill=vocab.codes(history["skill_id"], "skill")[order],
        answer=answer[order], first=first.astype(np.int64), starts=starts, lengths=lengths)


@dataclass(frozen=True)
class _Batch:
    idx: np.ndarray  # (B, L) flat row index of each cell (0 where padded)
    mask: np.ndarray  # (B, L) True on real rows
    item: torch.Tensor
    skill: torch.Tensor
    answer: torch.Tensor
    first: torch.Tensor


def _batch(enc: _Encoded, students: np.ndarray) -> _Batch:
    """Right-padded so that the causal GRU never reads padding before a real row."""
    lengths = enc.lengths[students]
    steps = np.arange(int(lengths.max()), dtype=np.int64)
    mask = steps[None, :] < lengths[:, None]
    idx = np.where(mask, enc.starts[students][:, None] + steps[None, :], 0)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.where(mask, a[idx], 0))

    return _Batch(idx, mask, t(enc.item), t(enc.skill), t(enc.answer), t(enc.first))


# ------------------------------------------------------------------------------------------------------- model

class _Net(nn.Module):
    def __init__(self, n_items: int, n_skills: int, p: DKTParams) -> None:
        super().__init__()
        e, h = p.embed_dim, p.hidden_size
        self.in_item = nn.Embedding((n_items + 1) * ANSWER_STATES, e)
        self.in_skill = nn.Embedding((n_skills + 1) * ANSWER_STATES, e)
        self.gru = nn.GRU(e, h, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(h))
        self.q_item = nn.Embedding(n_items + 1, e)
        self.q_skill = nn.Embedding(n_skills + 1, e)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        self.drop = nn.Dropout(p.dropout)
        self.head = nn.Sequential(nn.Linear(h + 2 * e, h), nn.ReLU(), nn.Linear(h, 1))
        for emb in (self.in_item, self.in_skill, self.q_item, self.q_skill):
            nn.init.normal_(emb.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, item: torch.Tensor, skill: torch.Tensor, answer: torch.Tensor, first: torch.Tensor,
                h_start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits for every cell, and the state after the last cell (carried into the next training chunk).

        ``first`` indexes the state list [before cell 0, after cell 0, ...]: a row reads the state from before the
        first row sharing its timestamp, which depends on strictly earlier events only.
        """
        b = item.shape[0]
        if h_start is None:
            h_start = self.h0.expand(b, -1)
        x = self.in_item(item * ANSWER_STATES + answer) + self.in_skill(skill * ANSWER_STATES + answer)
        out, h_last = self.gru(self.drop(x), h_start.unsqueeze(0).contiguous())
        states = torch.cat([h_start.unsqueeze(1), out], dim=1)
        hq = states.gather(1, first.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
        q = torch.cat([self.drop(hq), self.q_item(item), self.q_skill(skill)], dim=-1)
        logits = self.head(q).squeeze(-1) + self.item_bias(item).squeeze(-1)
        return logits, h_last.squeeze(0)


@contextlib.contextmanager
def _torch_settings(threads: int, seed: int | None = None) -> Iterator[None]:
    """Deterministic, fixed-thread torch for the block; the caller's global settings come back afterwards."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


def _predict_logits(net: _Net, enc: _Encoded) -> np.ndarray:
    """Logits per sorted row over each student's whole history, students batched by similar length."""
    out = np.zeros(len(enc.order), dtype=np.float64)
    by_len = np.argsort(enc.lengths, kind="stable")
    net.eval()
    i = 0
    with torch.no_grad():
        while i < len(by_len):
            j = i + 1
            # Grow the batch while the padded block (students x longest) stays under the memory budget.
            while j < len(by_len) and (j - i + 1) * int(enc.lengths[by_len[j]]) <= PREDICT_TOKENS:
                j += 1
            b = _batch(enc, by_len[i:j])
            logits, _ = net(b.item, b.skill, b.answer, b.first)
            out[b.idx[b.mask]] = logits.numpy()[b.mask].astype(np.float64)
            i = j
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class DKTModel:
    """A trained DKT network with its vocabularies; predicts from a raw history frame."""

    def __init__(self, net: _Net, vocab: _Vocab, params: DKTParams, best_epoch: int = 0,
                 history: list[dict[str, Any]] | None = None) -> None:
        self.net = net
        self.vocab = vocab
        self.params = params
        self.best_epoch = best_epoch
        self.history_: list[dict[str, Any]] = history or []

    def predict(self, history: pd.DataFrame) -> np.ndarray:
        """P(correct) for every row of ``history``, aligned with the input row order (not sorted order)."""
        if len(history) == 0:
            return np.zeros(0, dtype=np.float64)
        enc = _encode(history, self.vocab)
        with _torch_settings(self.params.threads):
            logits = _predict_logits(self.net, enc)
        out = np.empty(len(history), dtype=np.float64)
        out[enc.order] = _sigmoid(logits)
        return out

    @property
    def size_bytes(self) -> int:
        return int(sum(p.numel() * p.element_size() for p in self.net.parameters()))

    def save(self, directory: str | Path) -> None:
        """Tensors via torch.save of a plain state_dict (loadable with weights_only=True); the rest as JSON."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), d / WEIGHTS_FILE)
        meta = {"format": FORMAT_VERSION, "params": dataclasses.asdict(self.params), "items": self.vocab.items,
                "skills": self.vocab.skills, "best_epoch": self.best_epoch, "history": self.history_,
                "torch": torch.__version__}
        (d / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> DKTModel:
        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported DKT model format {meta.get('format')!r} in {d}")
        params = DKTParams.from_dict(meta["params"])
        vocab = _Vocab(list(meta["items"]), list(meta["skills"]))
        net = _Net(len(vocab.items), len(vocab.skills), params)
        net.load_state_dict(torch.load(d / WEIGHTS_FILE, weights_only=True, map_location="cpu"))
        net.eval()
        return cls(net, vocab, params, int(meta["best_epoch"]), list(meta["history"]))


# ---------------------------------------------------------------------------------------------------- training

def _targets(enc: _Encoded, targets: pd.DataFrame, students: set[str]) -> np.ndarray:
    """Label per sorted row, NaN where the row is not a target of this student set."""
    label = pd.Series(targets["label"].to_numpy(dtype="float64"), index=targets["event_id"].astype(str).to_numpy())
    label = label[~label.index.duplicated(keep="last")]
    y = label.reindex(enc.event_ids).to_numpy(dtype="float64")
    in_set = pd.Index(enc.student_ids).isin(list(students))
    y[~np.repeat(in_set, enc.lengths)] = np.nan
    return y


def _valid_loss(net: _Net, enc: _Encoded, y: np.ndarray) -> float:
    keep = ~np.isnan(y)
    if not keep.any():
        return float("nan")
    z = _predict_logits(net, enc)[keep]
    t = y[keep]
    # log-loss from logits, stable for large |z|
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def fit(history: pd.DataFrame, targets: pd.DataFrame, train_students: set[str], valid_students: set[str],
        params: DKTParams) -> DKTModel:
    """Train on train_students' targeted rows; early-stop on valid_students' log-loss.

    The labels come from ``targets`` (late grades included), while the inputs are ``history.correct`` as it was
    known: training sees the same inputs that scoring will.
    """
    train_students = {str(s) for s in train_students}
    valid_students = {str(s) for s in valid_students}
    sid = history["student_id"].astype(str)
    train_hist = history[sid.isin(train_students)]
    valid_hist = history[sid.isin(valid_students)]
    if len(train_hist) == 0:
        raise ValueError("DKT fit: no history rows for the training students")
    vocab = _Vocab(sorted(train_hist["item_id"].astype(str).unique()),
                   sorted(train_hist["skill_id"].astype(str).unique()))
    enc = _encode(train_hist, vocab)
    y = _targets(enc, targets, train_students)
    if np.isnan(y).all():
        raise ValueError("DKT fit: none of the training students' rows has a target")
    venc = _encode(valid_hist, vocab) if len(valid_hist) else None
    vy = _targets(venc, targets, valid_students) if venc is not None else None
    has_valid = vy is not None and bool((~np.isnan(vy)).any())

    rng = np.random.default_rng(params.seed)
    with _torch_settings(params.threads, params.seed):
        net = _Net(len(vocab.items), len(vocab.skills), params)
        opt = torch.optim.Adam(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        # Only students with at least one target are worth a forward pass.
        has_target = np.add.reduceat((~np.isnan(y)).astype(np.int64), enc.starts) > 0
        pool = np.flatnonzero(has_target)
        best = (float("inf"), 0, {k: v.detach().clone() for k, v in net.state_dict().items()})
        log: list[dict[str, Any]] = []
        stale = 0
        for epoch in range(1, params.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            loss_sum, n_sum = 0.0, 0
            perm = pool[rng.permutation(len(pool))]
            for s in range(0, len(perm), params.batch_size):
                batch_loss, batch_n = _train_batch(net, opt, enc, y, perm[s:s + params.batch_size], params, rng)
                loss_sum, n_sum = loss_sum + batch_loss, n_sum + batch_n
            train_loss = loss_sum / max(n_sum, 1)
            valid_loss = _valid_loss(net, venc, vy) if has_valid and venc is not None and vy is not None \
                else train_loss
            log.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss if has_valid else None,
                        "seconds": round(time.perf_counter() - t0, 3)})
            if valid_loss < best[0] - 1e-6:
                best = (valid_loss, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
                stale = 0
            else:
                stale += 1
                if stale >= params.patience:
                    break
        net.load_state_dict(best[2])
        net.eval()
    return DKTModel(net, vocab, params, best_epoch=best[1], history=log)


def _train_batch(net: _Net, opt: torch.optim.Optimizer, enc: _Encoded, y: np.ndarray, students: np.ndarray,
                 params: DKTParams, rng: np.random.Generator) -> tuple[float, int]:
    """One optimiser step over a batch of students; returns (summed log-loss, targeted rows)."""
    b = _batch(enc, students)
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


# ------------------------------------------------------------------------------------------------------ MLflow

def _normalise_input(model_input: pd.DataFrame) -> pd.DataFrame:
    """MLflow's schema enforcement may hand back plain dtypes (float correct, naive or string ts)."""
    df = pd.DataFrame(model_input).copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["correct"] = pd.to_numeric(df["correct"], errors="coerce").astype("Int64")
    return df


class DKTPyfunc(PythonModel):
    """For MLflow tooling (serving, the registry UI, mlflow.pyfunc.load_model); airgate scores via load_logged."""

    def load_context(self, context: Any) -> None:
        self.model = DKTModel.load(context.artifacts["dkt"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.model.predict(_normalise_input(model_input))


PYFUNC_CODE = "import mlflow.models\n\nfrom airgate.model.dkt import DKTPyfunc\n\nmlflow.models.set_model(DKTPyfunc())\n"


def log_model(model: DKTModel, name: str, input_example: pd.DataFrame) -> Any:
    """Log as a pyfunc model inside the caller's active run; returns MLflow's ModelInfo.

    The wrapper is logged as code (MLflow's models-from-code), not cloudpickled: loading it then runs two lines of
    our own source instead of unpickling an object, and the weights travel as a plain state_dict.
    """
    with tempfile.TemporaryDirectory(prefix="dkt-") as tmp:
        model.save(Path(tmp) / "dkt")
        code = Path(tmp) / "dkt_pyfunc.py"
        code.write_text(PYFUNC_CODE)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(code), artifacts={"dkt": str(Path(tmp) / "dkt")},
            input_example=_example(input_example), signature=_signature(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"pandas=={pd.__version__}",
                              f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"])


def _signature() -> Any:
    """Written out, because MLflow cannot infer one: its datetime type refuses tz-aware timestamps, which is what
    ``load_history`` gives, and its double refuses a nullable Int64 ``correct``. Both pass through untouched
    (AnyType) and the model parses them."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    inputs = Schema([ColSpec("string", "event_id"), ColSpec("string", "student_id"), ColSpec("string", "item_id"),
                     ColSpec("string", "skill_id"), ColSpec(AnyType(), "ts"),
                     ColSpec(AnyType(), "correct")])
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


def _example(history: pd.DataFrame) -> pd.DataFrame:
    """The columns the model reads, in types JSON can carry: MLflow stores the example as JSON."""
    ex = history[["event_id", "student_id", "item_id", "skill_id", "ts", "correct"]].copy()
    ex["ts"] = pd.to_datetime(ex["ts"], utc=True)
    ex["correct"] = ex["correct"].astype("float64")
    return ex.reset_index(drop=True)


def load_logged(model_uri: str) -> DKTModel:
    """The DKT model behind a logged pyfunc (runs:/, models:/ or a logged-model URI), without the pyfunc layer."""
    from mlflow.artifacts import download_artifacts

    with tempfile.TemporaryDirectory(prefix="dkt-") as tmp:
        local = Path(download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        hits = sorted(p.parent for p in local.rglob(META_FILE))
        if not hits:
            raise FileNotFoundError(f"no DKT model ({META_FILE}) under {model_uri}")
        return DKTModel.load(hits[0])

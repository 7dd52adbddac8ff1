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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from torch import nn

# DKTParams is part of this module's public face (specs, logged models and tests name it here).
from airgate.model.dkt_encoding import ANSWER_STATES, DKTParams, Encoded, Vocab, encode, make_batch  # noqa: F401

PREDICT_TOKENS = 262_144  # padded (student x step) cells per forward pass at predict time: bounds memory
WEIGHTS_FILE = "weights.pt"
META_FILE = "dkt.json"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------------- model


class DKTNet(nn.Module):
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

    def forward(
        self,
        item: torch.Tensor,
        skill: torch.Tensor,
        answer: torch.Tensor,
        first: torch.Tensor,
        h_start: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
def torch_settings(threads: int, seed: int | None = None) -> Iterator[None]:
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


def predict_logits(net: DKTNet, enc: Encoded) -> np.ndarray:
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
            b = make_batch(enc, by_len[i:j])
            logits, _ = net(b.item, b.skill, b.answer, b.first)
            out[b.idx[b.mask]] = logits.numpy()[b.mask].astype(np.float64)
            i = j
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class DKTModel:
    """A trained DKT network with its vocabularies; predicts from a raw history frame."""

    def __init__(
        self,
        net: DKTNet,
        vocab: Vocab,
        params: DKTParams,
        best_epoch: int = 0,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.net = net
        self.vocab = vocab
        self.params = params
        self.best_epoch = best_epoch
        self.history_: list[dict[str, Any]] = history or []

    def predict(self, history: pd.DataFrame) -> np.ndarray:
        """P(correct) for every row of ``history``, aligned with the input row order (not sorted order)."""
        if len(history) == 0:
            return np.zeros(0, dtype=np.float64)
        enc = encode(history, self.vocab)
        with torch_settings(self.params.threads):
            logits = predict_logits(self.net, enc)
        out = np.empty(len(history), dtype=np.float64)
        out[enc.order] = sigmoid(logits)
        return out

    @property
    def size_bytes(self) -> int:
        return int(sum(p.numel() * p.element_size() for p in self.net.parameters()))

    def save(self, directory: str | Path) -> None:
        """Tensors via torch.save of a plain state_dict (loadable with weights_only=True); the rest as JSON."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), d / WEIGHTS_FILE)
        meta = {
            "format": FORMAT_VERSION,
            "params": dataclasses.asdict(self.params),
            "items": self.vocab.items,
            "skills": self.vocab.skills,
            "best_epoch": self.best_epoch,
            "history": self.history_,
            "torch": torch.__version__,
        }
        (d / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> DKTModel:
        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported DKT model format {meta.get('format')!r} in {d}")
        params = DKTParams.from_dict(meta["params"])
        vocab = Vocab(list(meta["items"]), list(meta["skills"]))
        net = DKTNet(len(vocab.items), len(vocab.skills), params)
        net.load_state_dict(torch.load(d / WEIGHTS_FILE, weights_only=True, map_location="cpu"))
        net.eval()
        return cls(net, vocab, params, int(meta["best_epoch"]), list(meta["history"]))


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

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
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
            name=name,
            python_model=str(code),
            artifacts={"dkt": str(Path(tmp) / "dkt")},
            input_example=_example(input_example),
            signature=_signature(),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )


def _signature() -> Any:
    """Written out, because MLflow cannot infer one: its datetime type refuses tz-aware timestamps, which is what
    ``load_history`` gives, and its double refuses a nullable Int64 ``correct``. Both pass through untouched
    (AnyType) and the model parses them."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    inputs = Schema(
        [
            ColSpec("string", "event_id"),
            ColSpec("string", "student_id"),
            ColSpec("string", "item_id"),
            ColSpec("string", "skill_id"),
            ColSpec(AnyType(), "ts"),
            ColSpec(AnyType(), "correct"),
        ]
    )
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

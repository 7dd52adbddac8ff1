"""A seeded knowledge-tracing simulator: the stand-in for the math app, with its oracle.

The generative model follows the DKT paper's synthetic setting (Piech et al. 2015, section 5) and adds what a real
app has:

* Items have a hidden skill (concept) and a difficulty beta. Students have an ability alpha per skill: a general
  ability drawn around their cohort's mean and grade level, plus a skill-specific deviation.
* P(correct) = guess + (1 - guess - slip) * sigmoid(alpha - beta). After each answer the ability on that skill grows
  (learning), a little more after a correct answer.
* Rapid guesses: with a small probability a student answers in under a second, and is right only by guessing.
* Some answers await grading: their ``correct`` is left empty in the file (the oracle still knows it).
* Cohorts: ``new_cohort_from_batch`` brings in students whose ability is shifted by ``cohort_shift`` (drift on demand).

Every row's true probability goes to an oracle file beside (never inside) the landing zone, so model quality can
be measured against the Bayes limit: no model can beat the AUC of the true probabilities on the same rows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airgate.core import storage

COLUMNS = ["event_id", "student_id", "item_id", "skill_id", "ts", "response_time_ms", "answer", "correct"]
OPTIONS = np.array(list("ABCD"))


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    n_items: int = 60
    n_skills: int = 5
    students_per_batch: int = 200
    events_per_student: int = 50
    guess: float = 0.25
    slip: float = 0.05
    learn_rate: float = 0.08
    learn_bonus_correct: float = 0.05
    rapid_guess_rate: float = 0.02
    ungraded_rate: float = 0.03
    grade_levels: tuple[int, ...] = (6, 7, 8)
    grade_effect: float = 0.35
    general_sd: float = 1.0
    skill_sd: float = 0.5
    new_cohort_from_batch: int | None = None
    cohort_shift: float = -1.0
    start: datetime = field(default_factory=lambda: datetime(2026, 9, 1, 8, tzinfo=UTC))


@dataclass(frozen=True)
class Batch:
    number: int
    events: pd.DataFrame  # COLUMNS, as the app would write them
    truth: pd.DataFrame  # event_id, true_p, true_correct, cohort, grade, rapid_guess


class Simulator:
    """Batch ``n`` is a function of (seed, n) alone, so any batch can be rebuilt without the ones before it."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        rng = np.random.default_rng([self.config.seed, 0])
        c = self.config
        self.item_skill = rng.integers(0, c.n_skills, size=c.n_items)
        self.item_difficulty = rng.normal(0.0, 1.0, size=c.n_items)
        self.item_key = OPTIONS[rng.integers(0, 4, size=c.n_items)]

    def cohort_of(self, batch_no: int) -> str:
        c = self.config
        return "B" if c.new_cohort_from_batch is not None and batch_no >= c.new_cohort_from_batch else "A"

    def batch(self, batch_no: int) -> Batch:
        c = self.config
        rng = np.random.default_rng([c.seed, 1, batch_no])
        cohort = self.cohort_of(batch_no)
        day0 = c.start + timedelta(days=batch_no)
        ev: list[tuple[object, ...]] = []
        truth: list[tuple[object, ...]] = []
        for s in range(c.students_per_batch):
            sid = f"s{batch_no:03d}_{s:04d}"
            grade = int(rng.choice(c.grade_levels))
            mean = (grade - np.mean(c.grade_levels)) * c.grade_effect + (
                c.cohort_shift if cohort == "B" else 0.0
            )
            # A general ability plus skill-specific deviations: students good at one skill tend to be good at others.
            ability = rng.normal(mean, c.general_sd) + rng.normal(0.0, c.skill_sd, size=c.n_skills)
            order = rng.permutation(c.n_items)
            n = min(c.events_per_student, c.n_items)
            t = day0 + timedelta(seconds=float(rng.uniform(0, 36_000)))
            for k in range(n):
                item = int(order[k % c.n_items])
                skill = int(self.item_skill[item])
                rapid = bool(rng.random() < c.rapid_guess_rate)
                if rapid:
                    p = c.guess
                    rt = int(rng.integers(150, 900))
                else:
                    z = ability[skill] - self.item_difficulty[item]
                    p = c.guess + (1.0 - c.guess - c.slip) / (1.0 + math.exp(-z))
                    rt = int(np.exp(rng.normal(math.log(12_000), 0.45)))
                correct = int(rng.random() < p)
                key = str(self.item_key[item])
                answer = key if correct else str(rng.choice([o for o in OPTIONS if o != key]))
                graded = bool(rng.random() >= c.ungraded_rate)
                eid = f"e{batch_no:03d}_{s:04d}_{k:03d}"
                ev.append(
                    (
                        eid,
                        sid,
                        f"i{item:03d}",
                        f"k{skill}",
                        t.isoformat(timespec="milliseconds"),
                        rt,
                        answer,
                        correct if graded else None,
                    )
                )
                truth.append((eid, p, correct, cohort, grade, rapid))
                if not rapid:
                    ability[skill] += c.learn_rate + c.learn_bonus_correct * correct
                t += timedelta(milliseconds=rt + int(rng.integers(2_000, 30_000)))
        events = pd.DataFrame(ev, columns=COLUMNS)
        events["correct"] = events["correct"].astype("Int64")
        truth_df = pd.DataFrame(
            truth, columns=["event_id", "true_p", "true_correct", "cohort", "grade", "rapid_guess"]
        )
        return Batch(batch_no, events, truth_df)

    def write_batch(
        self,
        batch_no: int,
        landing_dir: storage.Location,
        oracle_dir: Path | str,
        roster_path: storage.Location | None = None,
    ) -> Any:
        """Write batch ``n`` as the app would: atomically (``storage.write_bytes_atomic``) into the landing zone,
        and register its students in the roster when one is given. The oracle is the simulator's own, local."""
        b = self.batch(batch_no)
        if roster_path is not None:
            update_roster(b, roster_path)
        oracle = Path(oracle_dir)
        oracle.mkdir(parents=True, exist_ok=True)
        target = _dest(landing_dir) / f"interactions_{batch_no:04d}.csv"
        storage.write_bytes_atomic(target, b.events.to_csv(index=False).encode())
        b.truth.to_csv(oracle / f"truth_{batch_no:04d}.csv", index=False)
        return target


def _dest(path: storage.Location) -> Any:
    """Where to publish: a plain path stays a local ``Path`` (what tests and benchmarks hand in and read back), a
    URI or a storage location is written through storage (the demo passes the spec's paths, resolved)."""
    if isinstance(path, str | os.PathLike) and "://" not in os.fspath(path):
        return Path(path).absolute()
    return storage.location(path)


def write_late_grades(batch: Batch, folder: storage.Location, fraction: float = 1.0, seed: int = 0) -> Any:
    """The late grader: true grades for (a seeded ``fraction`` of) the batch's rows that awaited grading."""
    pending = batch.events.loc[batch.events["correct"].isna(), ["event_id"]]
    if fraction < 1.0:
        pending = pending.sample(
            frac=fraction, random_state=np.random.default_rng([seed, batch.number]).integers(2**31)
        )
    grades = pending.merge(batch.truth[["event_id", "true_correct"]], on="event_id")
    target = _dest(folder) / f"late_{batch.number:04d}.csv"
    storage.write_bytes_atomic(
        target, grades.rename(columns={"true_correct": "label"}).to_csv(index=False).encode()
    )
    return target


def answer_reviews(truth: pd.DataFrame, event_ids: list[str], reviewer: str = "sim-reviewer") -> pd.DataFrame:
    """The human reviewer: answers queued rows with the realised (true) answer."""
    t = truth.set_index("event_id").loc[event_ids, "true_correct"]
    return pd.DataFrame({"event_id": event_ids, "label": t.astype(int).to_numpy(), "reviewer": reviewer})


def write_catalog(sim: Simulator, path: storage.Location) -> Any:
    """The app's item catalog (item_id, skill_id): what cleaning checks items and skills against."""
    target = _dest(path)
    storage.write_bytes_atomic(
        target,
        pd.DataFrame(
            {
                "item_id": [f"i{i:03d}" for i in range(sim.config.n_items)],
                "skill_id": [f"k{k}" for k in sim.item_skill],
            }
        )
        .to_csv(index=False)
        .encode(),
    )
    return target


def update_roster(batch: Batch, path: storage.Location) -> Any:
    """The app's student roster (student_id, grade_level, cohort), extended with the batch's students.

    Slice metrics (the bias gate) join it at evaluation; it is rewritten atomically, so a reader never sees half."""
    target = _dest(path)
    new = (
        batch.events[["event_id", "student_id"]]
        .merge(batch.truth[["event_id", "grade", "cohort"]], on="event_id")
        .drop_duplicates("student_id")
        .rename(columns={"grade": "grade_level"})[["student_id", "grade_level", "cohort"]]
    )
    if storage.exists(target):
        with storage.open_read(target, what="the roster") as fh:
            old = pd.read_csv(fh, dtype={"student_id": str})
        new = pd.concat([old, new]).drop_duplicates("student_id", keep="last")
    storage.write_bytes_atomic(target, new.sort_values("student_id").to_csv(index=False).encode())
    return target


def load_truth(oracle_dir: Path | str) -> pd.DataFrame:
    files = sorted(Path(oracle_dir).glob("truth_*.csv"))
    if not files:
        return pd.DataFrame(columns=["event_id", "true_p", "true_correct", "cohort", "grade", "rapid_guess"])
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def history_limit(
    sim: Simulator, events: pd.DataFrame, roster: pd.DataFrame, particles: int = 2000, seed: int = 0
) -> pd.Series:
    """P(correct) from a particle filter that knows every parameter of the simulator except each student's
    abilities, which it infers from the student's earlier answers, exactly as a perfect model could.

    The oracle knows the abilities, so no model that sees only history can reach its AUC; the AUC of these
    probabilities is the limit for a model that does (early answers of a student are guesses for everyone).
    ``events``: event_id, student_id, item_id, ts, correct (nullable); ``roster``: student_id, grade_level, cohort.
    """
    c = sim.config
    rng = np.random.default_rng(seed)
    ev = events.sort_values(["student_id", "ts", "event_id"], kind="mergesort").reset_index(drop=True)
    students = ev["student_id"].unique()
    idx = {s: i for i, s in enumerate(students)}
    ev["_s"] = ev["student_id"].map(idx)
    ev["_k"] = ev.groupby("_s").cumcount()
    item = ev["item_id"].str[1:].astype(int).to_numpy()
    n_s, steps = len(students), int(ev["_k"].max()) + 1
    ros = roster.set_index("student_id").reindex(students)
    mean = (
        (ros["grade_level"].astype(float) - np.mean(c.grade_levels)) * c.grade_effect
        + np.where(ros["cohort"].astype(str) == "B", c.cohort_shift, 0.0)
    ).to_numpy()
    ability = (
        mean[:, None, None]
        + rng.normal(0, c.general_sd, (n_s, particles, 1))
        + rng.normal(0, c.skill_sd, (n_s, particles, c.n_skills))
    )
    logw = np.zeros((n_s, particles))
    out = np.empty(len(ev))
    for k in range(steps):
        at = ev.index[ev["_k"] == k].to_numpy()
        s_idx = ev.loc[at, "_s"].to_numpy()
        it = item[at]
        sk = sim.item_skill[it]
        z = ability[s_idx, :, sk] - sim.item_difficulty[it][:, None]
        p = c.guess + (1.0 - c.guess - c.slip) / (1.0 + np.exp(-z))
        w = np.exp(logw[s_idx] - logw[s_idx].max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        out[at] = (w * p).sum(axis=1)
        obs = ev.loc[at, "correct"]
        graded = obs.notna().to_numpy()
        y = np.where(graded, obs.fillna(0).astype(int).to_numpy(), 0)
        drawn = rng.random(p.shape) < p  # an ungraded answer: each particle imagines its own outcome
        outcome = np.where(graded[:, None], y[:, None].astype(bool), drawn)
        logw[s_idx] += np.where(graded[:, None], np.log(np.where(outcome, p, 1.0 - p)), 0.0)
        ability[s_idx, :, sk] += c.learn_rate + c.learn_bonus_correct * outcome
        # Resample students whose weights collapsed, so the particles stay where the posterior is.
        w_all = np.exp(logw[s_idx] - logw[s_idx].max(axis=1, keepdims=True))
        w_all /= w_all.sum(axis=1, keepdims=True)
        ess = 1.0 / (w_all**2).sum(axis=1)
        for j in np.flatnonzero(ess < particles / 2):
            st = s_idx[j]
            pick = rng.choice(particles, particles, p=w_all[j])
            ability[st] = ability[st, pick]
            logw[st] = 0.0
    return pd.Series(out, index=ev["event_id"].to_numpy())


def oracle_auc(truth: pd.DataFrame, event_ids: pd.Series | None = None) -> float:
    """AUC of the true probabilities against the realised answers: the Bayes limit for these rows."""
    from sklearn.metrics import roc_auc_score

    t = truth if event_ids is None else truth[truth["event_id"].isin(set(event_ids))]
    return float(roc_auc_score(t["true_correct"], t["true_p"]))

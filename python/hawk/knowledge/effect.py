"""The effect model: for a (triple, context) pair, how likely applying the triple removes
its trigger, and what it does to the cycles.

Two XGBoost boosters learned from the application log: a classifier of ``fixed`` (the
fault gone, or the kernel faster, with a correct result) and a regressor of the log cycle
ratio (bottleneck repairs that ran). A row is the context the triple was applied in (its
semantic vector: footprints, unit mix, fault code, bottleneck pipe, busy pipes, category),
the triple's executable and trigger, its retrieval scores then, and its record before that
application (so the label never leaks into the row). The models are stored in the
knowledge store in XGBoost's own JSON format, with the feature names they were trained on;
their quality is measured on the most recent applications held back from training: how
well they tell fixes from failures (AUC, accuracy against the majority class), and what
ranking with them does -- of the repairs planned together for one context, how often the
one ranked first fixed it, ranked by the 2D fusion alone and reranked by the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .triple import Triple

FIX_MODEL, CYCLE_MODEL = "effect.fix", "effect.cycles"
MIN_APPLICATIONS = 20  # below this the model says nothing and retrieval ranks without it
RETRAIN_EVERY = 10  # new applications between retrainings
TRUST_AUC = 0.65
HOLD_BACK = 0.2
MAX_FEATURES = 256
ROUNDS, MORE_ROUNDS = 30, 10
EFFECT_FLOOR = 0.25  # a triple the model doubts still counts a quarter of its fused score
PARAMS = {"max_depth": 4, "eta": 0.3, "subsample": 1.0, "min_child_weight": 1.0, "nthread": 1, "seed": 0}


def row(triple: Triple | None, features: dict, scores: dict, prior: tuple[int, int]) -> dict[str, float]:
    """The model's view of one (triple, context) pair; ``prior`` = (successes, applications)
    of the triple before this application."""
    out = {f"ctx:{k}": float(v) for k, v in features.items()}
    out.update({f"score:{k}": float(v) for k, v in scores.items()})
    ok, n = prior
    out["prior:rate"] = (ok + 1) / (n + 2)
    out["prior:n"] = math.log2(1 + n)
    if triple is not None:
        out[f"rewrite:{triple.executable.rewrite}"] = 1.0
        out[f"trigger:{triple.context.trigger}"] = 1.0
        out["verified"] = float(triple.stats.verified)
    return out


def reranked(fused: float, chance: float) -> float:
    """A hit's score once the model has said how likely it fixes the context."""
    return fused * (EFFECT_FLOOR + chance)


def training_rows(applications: list[dict], triples: dict[str, Triple]) -> tuple[list[dict], list[int], list, list]:
    """(rows, fixed labels, log cycle ratios or None, query keys) for every applied
    application, in log order, each row built with the triple's record as it was before it;
    applications with the same query key were retrieved together for one context."""
    seen: dict[str, tuple[int, int]] = {}
    rows, fixed, cycles, queries = [], [], [], []
    for app in applications:
        if not app["applied"]:
            continue
        tid = app["triple_id"]
        prior = seen.get(tid, (0, 0))
        rows.append(row(triples.get(tid), app.get("features") or {}, app.get("scores") or {}, prior))
        fixed.append(int(app["fixed"]))
        before, after = app.get("cycles_before"), app.get("cycles_after")
        cycles.append(math.log(after / before) if before and after else None)
        seen[tid] = (prior[0] + int(app["fixed"]), prior[1] + 1)
        queries.append((app.get("run"), app.get("workload"), json.dumps(app.get("features") or {}, sort_keys=True)))
    return rows, fixed, cycles, queries


@dataclass
class Quality:
    """The fix model measured on held-back applications."""

    trained_on: int
    held_back: int
    auc: float | None  # None when the held-back part has one class only
    accuracy: float | None
    majority_accuracy: float | None
    contexts: int = 0  # held-back contexts where the repairs planned together fixed and failed
    top_fixed_fused: int = 0  # ... in which the first by the 2D fusion fixed it
    top_fixed_model: int = 0  # ... in which the first reranked by the model fixed it

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class EffectModel:
    """The two boosters and the feature names they read."""

    def __init__(self, fix=None, cycles=None, names: list[str] | None = None, meta: dict | None = None):
        self.fix, self.cycles, self.names, self.meta = fix, cycles, list(names or []), dict(meta or {})

    @property
    def ready(self) -> bool:
        return self.fix is not None and bool(self.names)

    @property
    def trusted(self) -> bool:
        """It ranks retrieval only once it has shown, on applications it did not train on,
        that it tells fixes from failures (AUC at least ``TRUST_AUC``)."""
        auc = (self.meta.get("quality") or {}).get("auc")
        return self.ready and auc is not None and auc >= TRUST_AUC

    def matrix(self, rows: list[dict]):
        import xgboost as xgb

        index = {n: i for i, n in enumerate(self.names)}
        x = np.full((len(rows), len(self.names)), np.nan, dtype=np.float32)
        for r, values in enumerate(rows):
            for k, v in values.items():
                if k in index:
                    x[r, index[k]] = v
        return xgb.DMatrix(x)  # columns in ``names`` order; the names live in the model's meta

    def predict(self, rows: list[dict]) -> tuple[list[float], list[float | None]]:
        """(chance of fixing, expected log cycle ratio or None) per row; 0.5 and None when untrained."""
        if not self.ready or not rows:
            return [0.5] * len(rows), [None] * len(rows)
        m = self.matrix(rows)
        p = [float(v) for v in self.fix.predict(m)]
        c = [float(v) for v in self.cycles.predict(m)] if self.cycles is not None else [None] * len(rows)
        return p, c


def train(applications: list[dict], triples: dict[str, Triple], previous: EffectModel | None = None) -> EffectModel | None:
    """The effect model for this evidence (None below ``MIN_APPLICATIONS``): measured on the
    last ``HOLD_BACK`` of the log first, then trained on all of it. A previous model whose
    feature names still cover the evidence is trained further (boosting continues from it);
    otherwise the model is trained afresh."""
    import xgboost as xgb

    rows, fixed, cycles, queries = training_rows(applications, triples)
    if len(rows) < MIN_APPLICATIONS:
        return None
    names = _vocabulary(rows)
    reuse = previous is not None and previous.ready and set(names) <= set(previous.names)
    if reuse:
        names = previous.names
    model = EffectModel(names=names)
    cut = int(len(rows) * (1 - HOLD_BACK))
    quality = _measure(model, rows[:cut], fixed[:cut], rows[cut:], fixed[cut:], queries[cut:])
    params = {**PARAMS, "objective": "binary:logistic", "eval_metric": "auc"}
    if len(set(fixed)) == 1:  # one class only: the base score says it all
        params["base_score"] = 0.99 if fixed[0] else 0.01
    data = model.matrix(rows)
    data.set_label(np.asarray(fixed, dtype=np.float32))
    model.fix = xgb.train(params, data, num_boost_round=MORE_ROUNDS if reuse else ROUNDS,
                          xgb_model=previous.fix if reuse else None)
    timed = [i for i, c in enumerate(cycles) if c is not None]
    if len(timed) >= MIN_APPLICATIONS // 2:
        sub = model.matrix([rows[i] for i in timed])
        sub.set_label(np.asarray([cycles[i] for i in timed], dtype=np.float32))
        model.cycles = xgb.train({**PARAMS, "objective": "reg:squarederror"}, sub, num_boost_round=ROUNDS)
    model.meta = {"applications": len(rows), "quality": quality.to_dict(), "reused": reuse,
                  "timed": len(timed)}
    return model


def _measure(model: EffectModel, train_rows, train_y, test_rows, test_y, test_queries) -> Quality:
    import xgboost as xgb

    if not test_rows or len(set(train_y)) < 2:
        return Quality(len(train_rows), len(test_rows), None, None, None)
    data = model.matrix(train_rows)
    data.set_label(np.asarray(train_y, dtype=np.float32))
    booster = xgb.train({**PARAMS, "objective": "binary:logistic", "eval_metric": "auc"}, data,
                        num_boost_round=ROUNDS)
    test = model.matrix(test_rows)
    y = np.asarray(test_y)
    test.set_label(y.astype(np.float32))
    p = booster.predict(test)
    accuracy = float(np.mean((p >= 0.5) == (y == 1)))
    majority = 1 if 2 * sum(train_y) >= len(train_y) else 0
    auc = None
    if 0 < y.sum() < len(y):  # XGBoost's own AUC of the held-back applications
        auc = float(booster.eval(test, name="held").rsplit(":", 1)[1])
    quality = Quality(len(train_rows), len(test_rows), auc, accuracy, float(np.mean(y == majority)))
    groups: dict = {}
    for i, key in enumerate(test_queries):
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len({test_y[i] for i in members}) < 2:  # all fixed or none did: any order ranks the same
            continue
        quality.contexts += 1
        fused = {i: test_rows[i].get("score:fused", 0.0) for i in members}
        quality.top_fixed_fused += test_y[max(members, key=lambda i: fused[i])]
        quality.top_fixed_model += test_y[max(members, key=lambda i: reranked(fused[i], float(p[i])))]
    return quality


def _vocabulary(rows: list[dict]) -> list[str]:
    count: dict[str, int] = {}
    for r in rows:
        for k in r:
            count[k] = count.get(k, 0) + 1
    return sorted(sorted(count, key=lambda k: -count[k])[:MAX_FEATURES])


def save(store, model: EffectModel) -> None:
    """Both boosters into the store, in XGBoost's JSON format, with the names they read."""
    meta = {"names": model.names, **model.meta}
    store.save_model(FIX_MODEL, bytes(model.fix.save_raw("json")), meta)
    if model.cycles is not None:
        store.save_model(CYCLE_MODEL, bytes(model.cycles.save_raw("json")), {"names": model.names})


def load(store) -> EffectModel | None:
    """The stored effect model, or None (none stored, or it does not load: it is retrained)."""
    import xgboost as xgb

    found = store.model(FIX_MODEL)
    if found is None:
        return None
    try:
        fix = xgb.Booster()
        fix.load_model(bytearray(found[0]))
        cycles = None
        timed = store.model(CYCLE_MODEL)
        if timed is not None and timed[1].get("names") == found[1].get("names"):
            cycles = xgb.Booster()
            cycles.load_model(bytearray(timed[0]))
    except xgb.core.XGBoostError:
        return None
    meta = {k: v for k, v in found[1].items() if k not in ("names", "format")}
    return EffectModel(fix, cycles, found[1].get("names") or [], meta)

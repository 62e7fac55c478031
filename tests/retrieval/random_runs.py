"""Seeded random qrels and runs shaped to stress trec_eval compatibility (ties, gaps, grades).

Holds test data generation only; no assertions and no test functions.
"""

from __future__ import annotations

import numpy as np


def random_case(seed: int) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Qrels graded 0-3 and a run with heavy score ties, missing queries and run-only queries.

    Doc ids "d0".."d59" make string order differ from numeric order ("d10" < "d2").
    """
    rng = np.random.default_rng(seed)
    pool = 60
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(int(rng.integers(5, 30))):
        qid = f"q{q}"
        judged = rng.choice(pool, size=int(rng.integers(1, 20)), replace=False)
        grades = rng.integers(0, 4, size=len(judged))
        if rng.random() < 0.1:
            grades[:] = 0  # a query with no relevant doc: left out of the mean
        qrels[qid] = {f"d{d}": int(g) for d, g in zip(judged, grades)}
        if rng.random() < 0.15:
            continue  # no run entry: counts as 0
        retrieved = rng.choice(pool, size=int(rng.integers(0, pool)), replace=False)
        if rng.random() < 0.5:
            scores = rng.integers(0, 5, size=len(retrieved)) / 4.0  # many ties
        else:
            scores = rng.normal(size=len(retrieved))
        run[qid] = {f"d{d}": float(s) for d, s in zip(retrieved, scores)}
    run["q_not_judged"] = {"d1": 1.0}
    return qrels, run

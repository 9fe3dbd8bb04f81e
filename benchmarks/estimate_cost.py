"""Worker-side cost of estimated performance: the class probabilities a worker computes for the sample
rows each supervisor pull collects, against the model calls of the requests those rows came from.

    python benchmarks/estimate_cost.py           # 15 repetitions per figure
    python benchmarks/estimate_cost.py --quick   # 5

A LogisticRegression and a 100-tree RandomForest (20 features) are registered in a temporary home and
loaded as a worker loads them (`load_predictor`). For 256 and 2,048 rows (the most one pull carries),
it times `Predictor.predict_proba` on the rows, as the worker runs it at pull time, and `predict` of one
row times that many (single-row requests, each sampled): the model's own work for the same traffic.
Printed: medians and their ratio. Goal: well under the 3% that monitoring as a whole may cost (HTTP
handling, left out of the denominator, only makes the true share smaller).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from common import quick_options


def median_seconds(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    options = quick_options(__doc__, argv)
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from registry import Registry
    from registry.serving.worker import load_predictor

    repeat = 5 if options.quick else 15
    X, y = make_classification(5000, 20, random_state=0)
    models = {
        "LogisticRegression": LogisticRegression().fit(X, y),
        "RandomForest (100 trees)": RandomForestClassifier(100, random_state=0).fit(X, y),
    }
    print(f"{'model':<26} {'rows':>6} {'predict_proba':>14} {'their requests':>15} {'share':>7}")
    with tempfile.TemporaryDirectory(prefix="modeldeck-estimate-") as home, Registry(home=home) as reg:
        for index, (name, model) in enumerate(models.items()):
            reg.register(model, f"m{index}", reference=X[:1000])
            predictor = load_predictor(reg, f"m{index}:1")
            single = median_seconds(lambda p=predictor: p.predict(X[:1].tolist()), repeat * 4)
            for rows in (256, 2048):
                batch = X[:rows].tolist()
                cost = median_seconds(lambda p=predictor, b=batch: p.predict_proba(b), repeat)
                print(
                    f"{name:<26} {rows:>6} {cost * 1e3:>11.2f} ms {rows * single * 1e3:>12.0f} ms"
                    f" {cost / (rows * single):>7.1%}"
                )


if __name__ == "__main__":
    main()

"""What a trained model costs (trainable parameters, batch-1 inference latency) and whether it keeps
within `tuner.constraints`.

Latency is the median of LATENCY_CALLS calls of the model on one example (`model(x, training=False)`
compiled once in a `tf.function`), after WARMUP_CALLS untimed calls that trace it: the cost of a
prediction served one request at a time on this machine, without Keras' `predict` loop around it.
TensorFlow is imported only when a model is measured.
"""

from __future__ import annotations

import statistics
import time

from sweeplab.tracking.tags import INFEASIBLE

# Trial metrics and the tag of a trial outside the constraints.
PARAMS = "params"
LATENCY_MS = "latency_ms"
COST_METRICS = (PARAMS, LATENCY_MS)
# The median of 50 calls: six measurements of a small mlp here were within 6% of each other (of
# 200 calls, no closer), at a quarter of the time every trial spends on it.
WARMUP_CALLS = 5
LATENCY_CALLS = 50


class InfeasibleTrial(Exception):
    """A built model outside tuner.constraints: not trained. Keras Tuner ends the trial INVALID, which
    (unlike FAILED) does not count towards tuner.max_consecutive_failed_trials."""


def trainable_params(model) -> int:
    return int(sum(int(w.shape.num_elements() or 0) for w in model.trainable_weights))


def latency_ms(model, x, calls: int = LATENCY_CALLS) -> float:
    """Median milliseconds of one call of `model` on the first example of `x` (an array, or a dict
    or list of them for several inputs)."""
    import keras
    import tensorflow as tf

    one = keras.tree.map_structure(lambda a: tf.convert_to_tensor(a[:1]), x)
    predict = tf.function(lambda inputs: model(inputs, training=False))
    for _ in range(WARMUP_CALLS):
        keras.tree.map_structure(lambda t: t.numpy(), predict(one))
    timings = []
    for _ in range(calls):
        began = time.perf_counter()
        keras.tree.map_structure(lambda t: t.numpy(), predict(one))  # waits for the result
        timings.append((time.perf_counter() - began) * 1000.0)
    return float(statistics.median(timings))


def measure(model, x) -> dict[str, float]:
    """{params, latency_ms} of a trained model."""
    return {PARAMS: trainable_params(model), LATENCY_MS: latency_ms(model, x)}


def violations(costs: dict[str, float], constraints: dict | None) -> list[str]:
    """Why `costs` break `constraints` ({metric: {min, max}}), one phrase per bound broken; metrics
    `costs` lacks are not judged (latency is unknown before training)."""
    broken = []
    for metric, bounds in sorted((constraints or {}).items()):
        if metric not in costs:
            continue
        value = costs[metric]
        low, high = (bounds or {}).get("min"), (bounds or {}).get("max")
        if high is not None and value > high:
            broken.append(f"{metric} {_number(value)} > max {_number(high)}")
        if low is not None and value < low:
            broken.append(f"{metric} {_number(value)} < min {_number(low)}")
    return broken


def infeasible_reason(costs: dict[str, float], constraints: dict | None) -> str | None:
    """The tag's value for a model outside the constraints (`tuner.constraints: ...`), else None."""
    broken = violations(costs, constraints)
    return f"tuner.constraints: {'; '.join(broken)}" if broken else None


def refuse_infeasible(model, run, constraints: dict | None) -> str | None:
    """Why a built model breaks a constraint known before training (its parameters), else None. Its
    run then ends FINISHED (nothing went wrong: the search chose not to train it), tagged with why;
    a later `fail` of the same run changes nothing (the first end wins)."""
    reason = infeasible_reason({PARAMS: trainable_params(model)}, constraints)
    if reason is not None:
        run.client.set_tag(run.run_id, INFEASIBLE, reason)
        run.finish()
    return reason


def is_feasible(run) -> bool:
    """A trial run not tagged infeasible."""
    return INFEASIBLE not in run.data.tags


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"

"""MLflow "model from code": the weighted average of one or more Keras models,
head by head.

A trial model with several named outputs is this with one member of weight 1
(MLflow's keras flavor would turn its dict of heads into one array); an
ensemble is this with its members. MLflow copies this file into each logged
model and runs it when loading, so it imports nothing from sweeplab: the model
loads wherever MLflow and Keras do. Members are `.keras` files (artifacts
`member_0`, `member_1`, ...) loaded in Keras safe mode, each taking raw inputs
(its preprocessing is inside it); `model_config` holds the weights, the output
heads, the input names and, per member, the heads whose class scores are
normalised to probabilities before averaging (`normalise`: members trained on
another encoding of the same labels, see `sweeplab.ensemble.encoding`).

`predict` takes what the members take: an array for one input, a dict of
arrays (or a DataFrame with one column per input) for several; it returns an
array for one head, {head: array} for several.
"""

import mlflow
import numpy as np


def to_probabilities(scores):
    """Class scores clipped at zero and divided by their row's sum; uniform where that sum is zero
    (as the ensemble's weights were chosen: sweeplab.ensemble.encoding.to_probabilities)."""
    clipped = np.clip(np.asarray(scores, dtype="float64"), 0.0, None)
    total = clipped.sum(axis=1, keepdims=True)
    return np.where(total > 0, clipped / np.where(total > 0, total, 1.0), 1.0 / clipped.shape[1])


class KerasAverage(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        config = context.model_config
        self.weights = [float(w) for w in config["weights"]]
        self.heads = list(config["heads"])
        self.inputs = list(config["inputs"])
        # Models logged before `normalise` existed normalise nothing.
        self.normalise = [list(heads) for heads in config.get("normalise") or [[] for _ in self.weights]]
        self.members = [
            keras.saving.load_model(context.artifacts[f"member_{i}"], compile=False, safe_mode=True)
            for i in range(len(self.weights))
        ]

    def _as_inputs(self, model_input):
        if hasattr(model_input, "columns"):  # a DataFrame
            if set(self.inputs) <= set(model_input.columns):
                model_input = {name: np.stack(model_input[name].to_numpy()) for name in self.inputs}
            else:
                model_input = model_input.to_numpy()
        if isinstance(model_input, dict) and not self.inputs and len(model_input) == 1:
            model_input = next(iter(model_input.values()))
        if isinstance(model_input, dict):
            missing = [name for name in self.inputs if name not in model_input]
            if missing:
                raise ValueError(f"missing input(s) {missing}; this model takes {self.inputs}")
            arrays = {name: np.asarray(model_input[name], dtype="float32") for name in self.inputs}
            return arrays if len(arrays) > 1 else arrays[self.inputs[0]]
        return np.asarray(model_input, dtype="float32")

    def _by_head(self, outputs):
        if isinstance(outputs, dict):
            return {h: np.asarray(outputs[h], dtype="float64") for h in self.heads}
        if isinstance(outputs, (list, tuple)):
            return {h: np.asarray(o, dtype="float64") for h, o in zip(self.heads, outputs)}
        return {self.heads[0]: np.asarray(outputs, dtype="float64")}

    # np.ndarray (or a dict of them): the hint only tells MLflow not to infer a
    # schema from it; the logged signature validates the inputs.
    def predict(self, context, model_input: np.ndarray, params=None):
        x = self._as_inputs(model_input)
        total = None
        for weight, member, normalise in zip(self.weights, self.members, self.normalise):
            outputs = self._by_head(member.predict(x, verbose=0))
            for head in normalise:
                outputs[head] = to_probabilities(outputs[head])
            total = {h: weight * o + (total[h] if total else 0.0) for h, o in outputs.items()}
        return total[self.heads[0]] if len(self.heads) == 1 else total


mlflow.models.set_model(KerasAverage())

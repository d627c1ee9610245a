"""The logged ensemble, as an MLflow model from code.

MLflow copies this file into the model and runs it when loading, so it
imports nothing from sweeplab: the model loads wherever MLflow and Keras do.
Members are `.keras` files (artifacts `member_0`, `member_1`, ...) loaded in
Keras safe mode; `model_config` holds their weights and the output heads.
`predict` returns the weighted average: an array for a single-output
ensemble, {head: array} for multi-output nets.
"""

import mlflow
import numpy as np


class EnsembleModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        config = context.model_config
        self.weights = [float(w) for w in config["weights"]]
        self.heads = list(config["heads"])
        self.members = [
            keras.saving.load_model(context.artifacts[f"member_{i}"], compile=False, safe_mode=True)
            for i in range(len(self.weights))
        ]

    def _by_head(self, outputs):
        if isinstance(outputs, dict):
            return {h: np.asarray(outputs[h]) for h in self.heads}
        if isinstance(outputs, (list, tuple)):
            return {h: np.asarray(o) for h, o in zip(self.heads, outputs)}
        return {self.heads[0]: np.asarray(outputs)}

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype="float32")
        total = None
        for weight, member in zip(self.weights, self.members):
            outputs = self._by_head(member.predict(x, verbose=0))
            scaled = {h: weight * o.astype("float64") for h, o in outputs.items()}
            total = scaled if total is None else {h: total[h] + scaled[h] for h in total}
        return total[self.heads[0]] if len(self.heads) == 1 else total


mlflow.models.set_model(EnsembleModel())

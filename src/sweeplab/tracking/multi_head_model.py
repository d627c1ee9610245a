"""MLflow "model from code" for a Keras model with several named outputs.

MLflow's keras flavor turns a model's output into one numpy array, which
loses the heads of a dict-output model; this pyfunc returns every head by
name. The file is copied into each logged model, so loading needs Keras only,
not sweeplab.
"""

import mlflow
import numpy as np


class MultiHeadKerasModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)

    def predict(self, context, model_input, params=None):
        if hasattr(model_input, "to_dict"):  # a DataFrame of one column per input
            model_input = {name: np.stack(model_input[name].to_numpy()) for name in model_input.columns}
        outputs = self.model.predict(model_input, verbose=0)
        return {name: np.asarray(value) for name, value in outputs.items()}


mlflow.models.set_model(MultiHeadKerasModel())

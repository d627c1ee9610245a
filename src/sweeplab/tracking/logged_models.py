"""Trained Keras models as MLflow models, under a run's artifact path `model`.

A single-output model uses MLflow's keras flavor; a model with several named
outputs is a pyfunc (`multi_head_model.py`) that returns every head. The
requirements are passed, so MLflow never infers them (a slow subprocess).
"""

from __future__ import annotations

import os
import tempfile


def log_keras_model(client, run_id: str, model, input_example) -> None:
    """The trained Keras model under artifact path `model` (MLflow's keras flavor)."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    # A direct call: predict() would trace one more graph for five rows.
    output = keras.tree.map_structure(keras.ops.convert_to_numpy, model(input_example, training=False))
    signature = infer_signature(input_example, output)
    if isinstance(output, dict):
        _log_multi_head_model(client, run_id, model, input_example, signature)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model")
        # mlflow.keras writes the input example before creating the folder.
        os.makedirs(path)
        mlflow.keras.save_model(
            model,
            path,
            signature=signature,
            input_example=input_example,
            # Passing requirements avoids MLflow's slow inference subprocess.
            pip_requirements=model_requirements(),
        )
        client.log_artifacts(run_id, path, "model")


def _log_multi_head_model(client, run_id: str, model, input_example, signature) -> None:
    """Several named outputs: a pyfunc that returns every head (see multi_head_model.py)."""
    import mlflow

    from sweeplab.tracking import multi_head_model

    with tempfile.TemporaryDirectory() as tmp:
        keras_file = os.path.join(tmp, "model.keras")
        model.save(keras_file)
        path = os.path.join(tmp, "model")
        mlflow.pyfunc.save_model(
            path,
            python_model=multi_head_model.__file__,
            artifacts={"keras_model": keras_file},
            signature=signature,
            input_example=input_example,
            pip_requirements=model_requirements(),
        )
        client.log_artifacts(run_id, path, "model")


def model_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for name in ("keras", "tensorflow", "tensorflow-cpu"):
        try:
            requirements.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return requirements

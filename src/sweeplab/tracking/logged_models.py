"""Models as MLflow 3 logged models: each is the logged model `model` of its
run (listed in the experiment's Models tab, loadable as `runs:/<run id>/model`
or `models:/<model id>`), and the metrics logged with its id are linked to it.

A single-output Keras model uses MLflow's keras flavor; anything with several
heads, and every ensemble, is a `keras_average` pyfunc. The requirements are
passed, so MLflow never infers them (a slow subprocess).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

NAME = "model"  # the artifact path users load: runs:/<run id>/model
AVERAGE_CODE = Path(__file__).with_name("keras_average.py")


@dataclass
class PreparedModel:
    """A logged model created and saved to a local folder, not yet uploaded."""

    model_id: str
    folder: tempfile.TemporaryDirectory
    path: str


def prepare_model(client, experiment_id: str, run_id: str, save, model_type: str) -> PreparedModel:
    """Create the run's logged model and let `save(path, mlflow_model)` write its files locally."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.models import Model

    logged = client.create_logged_model(experiment_id, name=NAME, source_run_id=run_id, model_type=model_type)
    folder = tempfile.TemporaryDirectory(prefix="sweeplab-model-")
    path = os.path.join(folder.name, NAME)
    try:
        save(
            path,
            Model(
                artifact_path=logged.artifact_location,
                run_id=run_id,
                model_id=logged.model_id,
                model_uuid=logged.model_id,
            ),
        )
    except BaseException:
        folder.cleanup()
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    return PreparedModel(logged.model_id, folder, path)


def upload_model(client, run_id: str, prepared: PreparedModel) -> str:
    """The prepared model's files to the store; the model READY and an output of the run. Returns its id."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    try:
        client.log_model_artifacts(prepared.model_id, prepared.path)
    except BaseException:
        client.finalize_logged_model(prepared.model_id, LoggedModelStatus.FAILED)
        raise
    finally:
        prepared.folder.cleanup()
    client.finalize_logged_model(prepared.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(prepared.model_id, step=0)])
    return prepared.model_id


def log_model(client, experiment_id: str, run_id: str, save, model_type: str) -> str:
    """Log what `save(path, mlflow_model)` writes as the run's logged model; return its id."""
    return upload_model(client, run_id, prepare_model(client, experiment_id, run_id, save, model_type))


def model_id_of(client, run) -> str | None:
    """The id of `run`'s logged model `model`, or None (a run logged without a model)."""
    ids = [output.model_id for output in (run.outputs.model_outputs if run.outputs else [])]
    for model_id in ids:
        if client.get_logged_model(model_id).name == NAME:
            return model_id
    return None


def download_model(client, run, destination: Path) -> Path | None:
    """`run`'s logged model downloaded into `destination`, or None when it has none."""
    import mlflow

    model_id = model_id_of(client, run)
    if model_id is None:
        return None
    destination.mkdir(parents=True, exist_ok=True)
    # The model's own artifact location: a models:/ URI would be looked up in MLflow's global store.
    location = client.get_logged_model(model_id).artifact_location
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(destination), tracking_uri=client.tracking_uri
        )
    )


def log_keras_model(client, experiment_id: str, run_id: str, model, input_example) -> str:
    """A trained trial model; returns the logged model's id."""
    return upload_model(client, run_id, prepare_keras_model(client, experiment_id, run_id, model, input_example))


def prepare_keras_model(client, experiment_id: str, run_id: str, model, input_example) -> PreparedModel:
    """A trained trial model, saved as a logged model of the run, ready to upload (see `upload_model`)."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    # A direct call: predict() would trace one more graph for five rows.
    output = keras.tree.map_structure(keras.ops.convert_to_numpy, model(input_example, training=False))
    signature = infer_signature(input_example, output)
    if isinstance(output, dict):

        def save(path, metadata):
            keras_file = os.path.join(os.path.dirname(path), "model.keras")
            model.save(keras_file)
            save_average(path, metadata, [keras_file], [1.0], list(output), signature, input_example)

    else:

        def save(path, metadata):
            # mlflow.keras writes the input example before creating the folder.
            os.makedirs(path)
            mlflow.keras.save_model(
                model,
                path,
                mlflow_model=metadata,
                signature=signature,
                input_example=input_example,
                pip_requirements=model_requirements(),
            )

    return prepare_model(client, experiment_id, run_id, save, model_type="keras")


def save_average(path, metadata, keras_files, weights, heads, signature, input_example=None) -> None:
    """A `keras_average` pyfunc over `keras_files` with `weights`, returning `heads`."""
    import mlflow

    mlflow.pyfunc.save_model(
        path,
        python_model=str(AVERAGE_CODE),
        artifacts={f"member_{i}": str(f) for i, f in enumerate(keras_files)},
        model_config={"weights": list(weights), "heads": list(heads), "inputs": named_inputs(signature)},
        signature=signature,
        input_example=input_example,
        mlflow_model=metadata,
        pip_requirements=[f"mlflow=={mlflow.__version__}", *model_requirements()],
    )


def named_inputs(signature) -> list[str]:
    """The input names of a multi-input model's signature; [] for one unnamed input."""
    return [name for name in signature.inputs.input_names() if isinstance(name, str)]


def model_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for name in ("keras", "tensorflow", "tensorflow-cpu"):
        try:
            requirements.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return requirements

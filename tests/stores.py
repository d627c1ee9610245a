"""A new MLflow SQLite store for a test, in a second instead of three.

MLflow creates a store's tables by running every one of its migrations (alembic), about two seconds
of CPU per store, paid by most tests. Here MLflow itself migrates one store once per test process,
and each test starts from a copy of that file: a real store of this MLflow version, still empty.
The first-use path that migrates a store is still run by the tests that start from no file
(`make sweep`, the installed wheel's search, a deleted store started afresh)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

_migrated: Path | None = None


def _template() -> Path:
    global _migrated
    if _migrated is None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = Path(tempfile.mkdtemp(prefix="sweeplab-store-template-"))
        store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"))
        store.engine.dispose()
        _migrated = folder / "mlflow.db"
    return _migrated


def sqlite_uri(folder: Path, name: str = "mlflow.db") -> str:
    """The URI of the SQLite store `folder / name`, made empty there first if it is not there yet
    (so that a test may name its store again to read it back). Its Default experiment keeps its
    artifacts in `folder`, as MLflow's default artifact root would when started in `folder`."""
    db = folder / name
    if db.exists():
        return f"sqlite:///{db}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), db)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(folder / "0"),))
    connection.close()
    return f"sqlite:///{db}"

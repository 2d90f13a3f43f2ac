"""Training configuration from `MLSP_*` environment variables (MLflow's own variables apply too)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from serving.settings import RandomSeed


class TrainingSettings(RandomSeed):
    """Settings of the training pipeline."""

    data_dir: Path = Path("data")
    """Root of pipeline outputs, the embedded MLflow store and materialised models."""
    test_size: float = Field(0.3, gt=0, lt=1)
    """Held-out fraction (book default 0.3)."""
    min_accuracy: float = 0.9
    """Evaluation gate: below this test accuracy the pipeline stops before registering."""
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    """Remote MLflow server; unset means the embedded store under `data_dir/mlflow`."""
    experiment: str = "ml-system-patterns"
    """MLflow experiment the training runs are logged to."""

    @property
    def pipeline_dir(self) -> Path:
        return self.data_dir / "pipeline"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow' / 'mlflow.db').resolve()}"

    def artifact_location(self) -> str | None:
        """Where the embedded store keeps artifacts (a remote server decides its own)."""
        if self.mlflow_tracking_uri:
            return None
        return (self.data_dir / "mlflow" / "artifacts").resolve().as_uri()


@lru_cache
def get_settings() -> TrainingSettings:
    return TrainingSettings()

"""The model contract: load -> golden self-test -> ready; predict.

A model artifact is a folder with `model.onnx` and `model.json` (the card, written by
`training/export.py`). Loading verifies the ONNX file's sha256 against the card, opens one ONNX
Runtime session with explicit thread counts, and runs the card's golden examples; only a model
that reproduces them is served. Servers load ONNX only: no pickle anywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, ValidationError

GOLDEN_ATOL = 1e-4
"""Golden outputs are recorded from ONNX Runtime itself; this absorbs CPU-kernel differences."""


class ModelError(Exception):
    """The artifact cannot be served: missing, tampered with, or failing its self-test."""


class ModelMissing(ModelError):
    """The artifact's files are not there (yet)."""


class InputSpec(BaseModel):
    name: str
    shape: list[int | None]
    dtype: str


class Golden(BaseModel):
    input: list[float]
    label: str
    class_id: int
    scores: list[float]


class PreprocessSpec(BaseModel):
    name: str
    version: str
    params: dict[str, Any]


class ModelCard(BaseModel):
    """`model.json`: what the model is, where it came from, and how to check it."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    sha256: str
    opset: dict[str, int]
    task: Literal["classification", "outlier"]
    input: InputSpec
    outputs: dict[str, str]
    feature_names: list[str]
    labels: list[str]
    preprocess: PreprocessSpec | None = None
    golden: list[Golden]
    metrics: dict[str, float] = {}
    libraries: dict[str, str] = {}
    git_sha: str = "unknown"
    data_hash: str = ""
    reference: dict[str, Any] = {}

    @property
    def n_features(self) -> int:
        width = self.input.shape[-1]
        return int(width) if width is not None else len(self.feature_names)


@dataclass(frozen=True, slots=True)
class Prediction:
    """Outputs for a batch: class ids and per-class scores (probabilities or outlier scores)."""

    class_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(model_dir: Path) -> ModelCard:
    card_path = model_dir / "model.json"
    if not card_path.is_file() or not (model_dir / "model.onnx").is_file():
        raise ModelMissing(f"no model.onnx + model.json in {model_dir}")
    try:
        return ModelCard.model_validate_json(card_path.read_bytes())
    except ValidationError as exc:
        raise ModelError(f"{card_path} is not a valid model card: {exc}") from exc


class OnnxModel:
    """One ONNX Runtime session and its card. `predict` is safe to call from any thread."""

    def __init__(self, card: ModelCard, session: ort.InferenceSession) -> None:
        self.card = card
        self._session = session
        self._input = card.input.name
        self._outputs = [card.outputs["label"], card.outputs["scores"]]
        self._outlier = card.task == "outlier"

    @classmethod
    def load(
        cls, model_dir: Path, *, intra_op_threads: int = 1, inter_op_threads: int = 1
    ) -> OnnxModel:
        """Verify the artifact and open a session. Raises ModelError when it can't be served."""
        card = read_card(model_dir)
        onnx_path = model_dir / "model.onnx"
        actual = sha256_file(onnx_path)
        if actual != card.sha256:
            raise ModelError(
                f"sha256 mismatch for {onnx_path}: card says {card.sha256[:12]}…, "
                f"file is {actual[:12]}…"
            )
        options = ort.SessionOptions()
        # ONNX Runtime's default pool spreads over every core and ignores cgroup CPU limits.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors
            raise ModelError(f"ONNX Runtime cannot open {onnx_path}: {exc}") from exc
        inputs = {i.name for i in session.get_inputs()}
        if card.input.name not in inputs:
            raise ModelError(f"model.onnx has inputs {sorted(inputs)}, card says {card.input.name}")
        return cls(card, session)

    def predict(self, x: npt.NDArray[np.float32]) -> Prediction:
        label, scores = self._session.run(self._outputs, {self._input: x})
        label = np.asarray(label).reshape(-1)
        scores = np.asarray(scores, dtype=np.float32)
        if self._outlier:
            # OneClassSVM: label is +1 inlier / -1 outlier; expose class ids 0=inlier, 1=outlier.
            return Prediction((label < 0).astype(np.int64), scores.reshape(-1, 1))
        return Prediction(label.astype(np.int64, copy=False), scores)

    def self_test(self) -> None:
        """Run the card's golden examples; raise ModelError on any mismatch."""
        if not self.card.golden:
            raise ModelError("the card has no golden examples")
        x = np.asarray([g.input for g in self.card.golden], dtype=np.float32)
        out = self.predict(x)
        for i, golden in enumerate(self.card.golden):
            if int(out.class_ids[i]) != golden.class_id:
                raise ModelError(
                    f"golden example {i}: class {int(out.class_ids[i])}, expected {golden.class_id}"
                )
            if not np.allclose(out.scores[i], golden.scores, atol=GOLDEN_ATOL):
                raise ModelError(
                    f"golden example {i}: scores {out.scores[i].tolist()}, expected {golden.scores}"
                )

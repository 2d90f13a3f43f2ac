"""What a service's configuration says its model must be, checked when the model loads.

A service configured from a spec (patterns/inference_template) names the model it serves,
its input, features, labels and preprocessing. The artifact comes from a registry alias, which
can move: `Expecting` wraps the predictor and, once the model has loaded and passed its golden
self-test, compares its card with `MLSP_EXPECT_*`. A mismatch is a ModelError, so the process
exits non-zero and a model the service was not configured for never gets traffic (the old pods
keep serving). An unset expectation is not checked.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from serving.model import ModelCard, ModelError
from serving.predictor import Predictor, Wrapper
from serving.settings import MlspSettings

NO_PREPROCESSING = "none"


class ExpectedModel(MlspSettings):
    """The model a service is configured for (unset: not checked)."""

    expect_model: str | None = None
    """Name the served model's card must carry."""
    expect_input: str | None = None
    """Name of the model's input tensor."""
    expect_features: Annotated[list[str] | None, NoDecode] = Field(None, min_length=1)
    """Feature names, in order, separated by commas."""
    expect_labels: Annotated[list[str] | None, NoDecode] = Field(None, min_length=1)
    """Class labels, in class-id order, separated by commas."""
    expect_preprocess: str | None = None
    """`name@version` of the preprocessing the model was trained for, or `none` (raw
    features)."""

    @field_validator("expect_features", "expect_labels", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split(",") if isinstance(value, str) else value


def preprocess_id(card: ModelCard) -> str:
    p = card.preprocess
    return NO_PREPROCESSING if p is None else f"{p.name}@{p.version}"


def mismatches(card: ModelCard, expected: ExpectedModel) -> list[str]:
    """Each way the card differs from the expectations, as `what: model has X, configured Y`."""
    pairs: list[tuple[str, object, object]] = [
        ("model", card.name, expected.expect_model),
        ("input", card.input.name, expected.expect_input),
        ("features", card.feature_names, expected.expect_features),
        ("labels", card.labels, expected.expect_labels),
        ("preprocess", preprocess_id(card), expected.expect_preprocess),
    ]
    return [
        f"{what}: the model has {have!r}, the service is configured for {want!r}"
        for what, have, want in pairs
        if want is not None and have != want
    ]


class Expecting(Wrapper):
    """A predictor that refuses, at load, a model its configuration does not describe."""

    def __init__(self, inner: Predictor, expected: ExpectedModel) -> None:
        super().__init__(inner)
        self.expected = expected

    async def load(self) -> None:
        await self.inner.load()
        if problems := mismatches(self.inner.card, self.expected):
            raise ModelError("not the configured model: " + "; ".join(problems))

"""The signed manifest the model hub publishes and a device verifies before it downloads.

    {"name", "version", "sha256", "size", "url", "card", "signature"}

`card` is the model card without its reference statistics (the device needs the labels, the
input and the golden examples, not the 1,000-row sample); it is signed with the rest, so a
changed golden example is as much a tampered manifest as a changed sha256. `signature` is
HMAC-SHA256 over everything else (serving/signing.py), with the key of `MLSP_MANIFEST_KEY`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from serving.model import ModelCard
from serving.settings import MlspSettings
from serving.signing import check_key

MODEL_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
Name = Annotated[str, StringConstraints(pattern=MODEL_NAME)]
Version = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,8}$")]
"""A registry version: a positive integer, so versions order (an upgrade, a downgrade)."""
DEVICE_CARD_EXCLUDE = frozenset({"reference"})
"""What the device never needs from the card (about 1 MB for digits-lr)."""


class Manifest(BaseModel):
    """A manifest once its signature has been checked."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: Name
    version: Version
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    size: int = Field(ge=1)
    """Bytes of model.onnx."""
    url: Annotated[str, StringConstraints(pattern=r"^/edge/models/[a-z0-9-]+/versions/\d+/")]
    """Path of model.onnx on the hub (it answers Range requests)."""
    card: ModelCard


def device_card(card: ModelCard) -> dict[str, Any]:
    return card.model_dump(mode="json", exclude=set(DEVICE_CARD_EXCLUDE))


def model_url(name: str, version: str) -> str:
    return f"/edge/models/{name}/versions/{version}/model.onnx"


class ManifestKey(MlspSettings):
    """The key the hub signs manifests with and devices verify them with."""

    manifest_key: SecretStr = Field(min_length=32)
    """HMAC-SHA256 key of the manifests (at least 32 bytes; from the Secret edge-manifest-key
    on Kubernetes)."""

    @field_validator("manifest_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        check_key(value.get_secret_value().encode())
        return value

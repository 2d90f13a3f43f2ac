"""Open Inference Protocol v2 tensors: the request and response bodies, JSON `data` and the
binary tensor data extension, in both directions.

JSON: a tensor's `data` is row-major, flat or nested exactly as its `shape` (a ragged or
partly nested list is refused), every element of the declared datatype (an INT32 holds an
integer in the int32 range, never 5e9 or 5.1).

Binary (the extension Triton and KServe clients use by default): the body is the JSON header,
`Inference-Header-Content-Length` bytes long, followed by each binary input's raw little-endian
bytes in input order, their sizes in `parameters.binary_data_size`. Outputs are sent the same
way when the request asks (`parameters.binary_data_output`, or `binary_data` per requested
output): the answer is then `application/octet-stream`, its JSON part as long as its
`Inference-Header-Content-Length` header says.

Everything here is checked before a model runs and refused with 400 (the framing) or 422 (a
field), the field named.
"""

from __future__ import annotations

from math import prod
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import BadRequest, InvalidInput
from serving.inference import invalid_from_pydantic
from serving.model import ModelCard, Prediction
from serving.predictor import Batch

HEADER_LENGTH = "inference-header-content-length"
"""The request/response header that marks a binary body: the length of its JSON part."""
OCTETS = "application/octet-stream"

NUMPY: dict[str, str] = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}
"""The datatypes an input may have (the models take float32; others are cast), little-endian
as the extension's byte order."""
_INT_RANGE = {"INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}


class InferInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None
    """Absent when the tensor comes as binary (`parameters.binary_data_size`)."""


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """An OIP v2 inference request (tensors as row-major `data`, flat or nested, or binary)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {
                            "name": "X",
                            "shape": [1, 4],
                            "datatype": "FP32",
                            "data": [5.1, 3.5, 1.4, 0.2],
                        }
                    ]
                }
            ]
        }
    )
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: Annotated[list[InferInput], Field(min_length=1, max_length=1)]
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None
    """Absent when the output is sent as binary (`parameters.binary_data_size`)."""


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


class Infer:
    """A parsed request: its JSON part and the binary part that followed it (maybe empty)."""

    def __init__(self, req: InferRequest, binary: bytes) -> None:
        self.req = req
        self.binary = binary


def parse(body: bytes, header_length: str | None) -> Infer:
    """Split a body by `Inference-Header-Content-Length` (absent: all JSON) and validate the
    JSON part (400 for bad framing or JSON, 422 naming a field)."""
    split = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length must be a byte count within the body "
                f"({len(body)} bytes), got {header_length!r}",
                field="Inference-Header-Content-Length",
            )
        split = int(header_length)
    try:
        req = InferRequest.model_validate_json(body[:split])
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    return Infer(req, body[split:])


def input_values(infer: Infer, index: int, limit: int) -> npt.NDArray[Any]:
    """Input `index` as a flat array of its declared datatype, from JSON `data` or the binary
    part; at most `limit` elements."""
    tensor = infer.req.inputs[index]
    field = f"inputs[{index}]"
    if tensor.datatype not in NUMPY:
        raise InvalidInput(
            [(f"{field}.datatype", f"{tensor.datatype!r} is not one of {sorted(NUMPY)}")]
        )
    n = prod(tensor.shape)
    if n > limit:
        raise InvalidInput([(f"{field}.shape", f"{tensor.shape} holds more than {limit} values")])
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise InvalidInput([(f"{field}.data", "required (or parameters.binary_data_size)")])
        return _json_values(tensor.data, tensor.shape, tensor.datatype, f"{field}.data")
    if tensor.data is not None:
        raise InvalidInput([(f"{field}.data", "give data or binary_data_size, not both")])
    return _binary_values(infer.binary, size, n, tensor.datatype, field)


def _binary_values(binary: bytes, size: Any, n: int, datatype: str, field: str) -> npt.NDArray[Any]:
    """One input's raw bytes (the request has one input, so they are the whole binary part)."""
    dtype = np.dtype(NUMPY[datatype])
    where = f"{field}.parameters.binary_data_size"
    if not isinstance(size, int) or isinstance(size, bool) or size != n * dtype.itemsize:
        raise InvalidInput(
            [(where, f"must be {n * dtype.itemsize} ({n} values of {datatype}), got {size!r}")]
        )
    if len(binary) != size:
        raise BadRequest(
            f"the body holds {len(binary)} bytes after its JSON header, {where} says {size}"
            " (is Inference-Header-Content-Length set?)",
            field=where,
        )
    return np.frombuffer(binary, dtype=dtype)


def _json_values(data: list[Any], shape: list[int], datatype: str, field: str) -> npt.NDArray[Any]:
    flat = _flat_as_shape(data, shape, field)
    low_high = _INT_RANGE.get(datatype)
    for i, v in enumerate(flat):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInput([(field, f"element {i} is not a number: {v!r}")])
        if low_high is None:
            continue
        if not isinstance(v, int):
            raise InvalidInput([(field, f"element {i} is not an integer ({datatype}): {v!r}")])
        if not low_high[0] <= v <= low_high[1]:
            raise InvalidInput([(field, f"element {i} is outside the {datatype} range: {v}")])
    try:
        return np.asarray(flat, dtype=np.float64 if low_high is None else NUMPY[datatype])
    except OverflowError:  # an integer past float64 in an FP tensor
        raise InvalidInput([(field, "a value is outside the float range")]) from None


def _flat_as_shape(data: list[Any], shape: list[int], field: str) -> list[Any]:
    """`data` flat (as many values as the shape holds) or nested exactly as `shape`."""
    n = prod(shape)
    if not any(isinstance(v, list) for v in data):
        if len(data) != n:
            raise InvalidInput([(field, f"{len(data)} values do not fill shape {shape}")])
        return data
    rows, width = (shape[0], shape[1]) if len(shape) == 2 else (-1, -1)
    if len(data) != rows or any(
        not isinstance(row, list) or len(row) != width or any(isinstance(v, list) for v in row)
        for row in data
    ):
        raise InvalidInput([(field, f"nested data does not have shape {shape} (ragged?)")])
    return [v for row in data for v in row]


def as_batch(values: npt.NDArray[Any], rows: int, width: int, field: str) -> Batch:
    """The flat values as the float32 [rows, width] batch a model takes (422 where a value
    does not fit float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = values.astype(np.float32).reshape(rows, width)
    if not np.isfinite(x).all():
        r, c = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput([(f"{field}[{r * width + c}]", "not a finite float32 value")])
    return x


def wanted_outputs(req: InferRequest, names: list[str]) -> list[tuple[str, bool]]:
    """The outputs asked for (default: all, in the model's order), each with whether it goes
    as binary; 422 for an unknown or repeated name, or an extension not served here."""
    default_binary = bool((req.parameters or {}).get("binary_data_output", False))
    if not req.outputs:
        return [(n, default_binary) for n in names]
    wanted: list[tuple[str, bool]] = []
    for i, out in enumerate(req.outputs):
        params = out.parameters or {}
        if out.name not in names:
            raise InvalidInput([(f"outputs[{i}].name", f"unknown output; the model has {names}")])
        if any(out.name == w for w, _ in wanted):
            raise InvalidInput([(f"outputs[{i}].name", f"{out.name!r} is asked for twice")])
        if params.get("classification"):
            raise InvalidInput(
                [(f"outputs[{i}].parameters.classification", "the extension is not served here")]
            )
        wanted.append((out.name, bool(params.get("binary_data", default_binary))))
    return wanted


def output_arrays(card: ModelCard, out: Prediction) -> dict[str, tuple[str, npt.NDArray[Any]]]:
    """The model's outputs by tensor name: (OIP datatype, array)."""
    return {
        card.outputs["label"]: ("INT64", np.asarray(out.class_ids, dtype="<i8")),
        card.outputs["scores"]: ("FP32", np.asarray(out.scores, dtype="<f4")),
    }


def encode_response(
    head: dict[str, Any],
    arrays: dict[str, tuple[str, npt.NDArray[Any]]],
    wanted: list[tuple[str, bool]],
) -> tuple[bytes, str, dict[str, str]]:
    """The answer's body, content type and extra headers: JSON, or JSON + binary outputs."""
    tensors: list[dict[str, Any]] = []
    raw: list[bytes] = []
    for name, binary in wanted:
        datatype, array = arrays[name]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw.append(array.tobytes())
            tensor["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            tensor["data"] = array.reshape(-1)
        tensors.append(tensor)
    header = orjson.dumps({**head, "outputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return header, "application/json", {}
    return header + b"".join(raw), OCTETS, {HEADER_LENGTH: str(len(header))}

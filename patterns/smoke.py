"""The smoke checks several patterns share (see patterns/declare.py: `Smoke`).

`make verify` plays each pattern's overlay under podman kube play, then makes the requests its
declaration names (kube/play.py, kube/smoke_client.py) and judges the answers with the
declared judge. These build the usual requests and judge their answers; a pattern with a rule
of its own (serial's gate, prep_pred's images, ...) declares its judge in its pattern.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from patterns.declare import Call, Verdict

IRIS_ROW = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"]})
"""Any iris model says setosa."""
POLL_SECONDS = "60"
"""How long the client polls a job until it is no longer pending."""


def card(process: str) -> str:
    """The golden examples of the model `process` serves (the model card in its image)."""
    return f"{{card:{process}}}"


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else {} (a judge reads answers of any shape)."""
    return value if isinstance(value, Mapping) else {}


def labels(body: Any) -> list[Any]:
    """The labels of a prediction answer ({"predictions": [{"label": ...}, ...]})."""
    preds = mapping(body).get("predictions")
    return [p.get("label") for p in preds] if isinstance(preds, list) else []


def same_labels(out: Mapping[str, Any]) -> Verdict:
    """200 and the expected labels, in order."""
    got, expected = labels(out.get("body")), out.get("expected")
    return out.get("status") == 200 and got == expected, f"labels {got}, expected {expected}"


def predict(rows: str = IRIS_ROW) -> Call:
    """POST /predict with `rows` (JSON or `card(process)`): the model's labels."""
    return Call("predict", (rows,), same_labels, "POST {service}/predict gives the model's labels")


def job_done(out: Mapping[str, Any]) -> Verdict:
    """202 and a ticket, then done with the expected labels (serving/jobs.py)."""
    ticket, final = mapping(out.get("ticket")), mapping(out.get("final"))
    got, expected = labels(final.get("result")), out.get("expected")
    ok = out.get("status") == 202 and final.get("status") == "done" and got == expected
    return ok, (
        f"202 {ticket.get('job_id')}, then {final.get('status')} after "
        f"{final.get('attempts')} attempt(s), labels {got}, expected {expected}"
    )


def job(rows: str, *, durable: bool = False) -> Call:
    """POST /jobs with `rows`, polled until done; `durable`: the job survives kill -9 Redis."""
    what = "POST {service}/jobs, polled to done with the model's labels"
    return Call("job", (rows, POLL_SECONDS), job_done, what, durable=durable)


def as_expected(out: Mapping[str, Any]) -> Verdict:
    """Each answer of a `requests` call has what its step expects (status, X-Cache, labels)."""
    answers = out.get("answers") or []
    lines, ok = [], bool(answers)
    for answer in answers:
        expect = answer.get("expect") or {}
        ok &= all(answer.get(k) == v for k, v in expect.items())
        seen = (answer.get("status"), answer.get("x_cache"), answer.get("labels"))
        sent = json.dumps(answer.get("sent"), separators=(",", ":"))
        lines.append(f"{sent} -> " + " ".join(str(v) for v in seen if v))
    return ok, "; ".join(lines)


def requests(steps: list[dict[str, Any]]) -> Call:
    """POST each {"path", "json", "expect": {"status", "x_cache"?, "labels"?}} in order."""
    what = "POST {service}: each answer has the expected status and X-Cache"
    return Call("requests", (json.dumps(steps),), as_expected, what)

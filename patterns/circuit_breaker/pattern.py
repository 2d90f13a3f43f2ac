"""Process declaration of circuit_breaker (see patterns/declare.py)."""

from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict


def primary_answers(out: Mapping[str, Any]) -> Verdict:
    """200 with the expected labels, answered by the primary itself (not degraded)."""
    body = smoke.mapping(out.get("body"))
    got, expected = smoke.labels(body), out.get("expected")
    source, degraded = body.get("source"), body.get("degraded")
    ok = out.get("status") == 200 and got == expected and (source, degraded) == ("primary", False)
    return ok, f"labels {got}, expected {expected}; source {source}, degraded {degraded}"


def breaker_closed(out: Mapping[str, Any]) -> Verdict:
    """GET /breaker: the breaker in front of the primary is closed."""
    body = smoke.mapping(out.get("body"))
    ok = out.get("status") == 200 and body.get("state") == "closed"
    return ok, f"breaker {body.get('state')} ({body.get('dependency')})"


PATTERN = Pattern(
    id="circuit_breaker",
    summary="A circuit breaker before iris-svc; degraded answers from a cache or iris-lr",
    processes=(
        Process(
            "primary",
            "patterns.circuit_breaker.primary",
            env={"MLSP_SERVICE": "circuit-breaker-primary", "MLSP_MODEL_DIR": "{model:iris-svc}"},
        ),
        Process(
            "proxy",
            "patterns.circuit_breaker.proxy",
            env={
                "MLSP_SERVICE": "circuit-breaker-proxy",
                "MLSP_PRIMARY_URL": "{url:primary}",
                "MLSP_MODEL_DIR": "{model:iris-lr}",
                "MLSP_OPEN_SECONDS": "10",
                "MLSP_MAX_INFLIGHT": "100",
            },
        ),
    ),
    models=("iris-svc", "iris-lr"),
    entry="proxy",
    smoke=Smoke(
        calls=(
            Call(
                "predict",
                (smoke.IRIS_ROW,),
                primary_answers,
                "POST {service}/predict: answered by the primary (source primary, not degraded)",
            ),
            Call("get", ("/breaker",), breaker_closed, "GET {service}/breaker: closed"),
        )
    ),
)

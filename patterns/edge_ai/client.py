"""edge-client: the device's command line (the device-sim service runs the same code).

    python -m patterns.edge_ai.client sync [--force] [--max-bytes N]
    python -m patterns.edge_ai.client predict [--rows FILE]     # {"instances": [...]}, - for stdin
    python -m patterns.edge_ai.client rollback
    python -m patterns.edge_ai.client status
    python -m patterns.edge_ai.client verify FILE               # a manifest file's signature

Settings come from MLSP_* variables (MLSP_HUB_URL, MLSP_STATE_DIR, MLSP_MODEL_NAME,
MLSP_MANIFEST_KEY, MLSP_SIZE_BUDGETS); the options override them. Each command prints one JSON
object. Exit codes: 0 done or up to date, 1 refused (the active model is unchanged), 2 bad
usage or input, 75 the hub unreachable or a download cut short (try again: it resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from patterns.edge_ai.device import (
    EXIT_CODES,
    MAX_MANIFEST_BYTES,
    Device,
    DeviceSettings,
    Refused,
    open_checked,
    parse_manifest,
)
from serving.errors import ApiError
from serving.inference import encode, parse_rows, prediction_body
from serving.logs import configure_logging
from serving.model import ModelError

MAX_ROWS_BYTES = 1 << 20


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of bytes")
    return value


def read_at_most(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the file (so a caller sees it is over); OSError if it
    cannot be read."""
    with path.open("rb") as fh:
        return fh.read(limit + 1)


def out(payload: dict[str, Any], code: int) -> int:
    sys.stdout.write(encode(payload).decode() + "\n")
    return code


def predict(device: Device, rows_file: str) -> int:
    body = b""
    if rows_file != "-":  # a bad file is bad usage (2), whatever the device holds
        try:
            body = read_at_most(Path(rows_file), MAX_ROWS_BYTES)
        except OSError as exc:
            return out({"error": f"--rows {rows_file}: cannot read: {exc.strerror}"}, 2)
    active = device.active()
    if active is None:
        return out({"error": "no model installed: run `sync` first"}, 1)
    try:
        model = open_checked(device.slot(active["slot"]))
    except ModelError as exc:
        return out({"error": f"the active model fails: {exc}"}, 1)
    if rows_file == "-":
        body = sys.stdin.buffer.read(MAX_ROWS_BYTES + 1)
    if len(body) > MAX_ROWS_BYTES:
        return out({"error": f"the rows are over {MAX_ROWS_BYTES} bytes"}, 2)
    try:
        x = parse_rows(body, model.card, device.s.max_batch)
    except ApiError as exc:
        return out({"error": exc.message, **exc.extra}, 2)
    return out(prediction_body(None, model.card, model.predict(x)), 0)


def verify_file(device: Device, path: Path) -> int:
    try:
        content = read_at_most(path, MAX_MANIFEST_BYTES)
    except OSError as exc:
        return out({"error": f"{path}: cannot read: {exc.strerror}"}, 2)
    try:
        manifest = parse_manifest(content, device.key)
    except Refused as exc:
        return out({"status": "refused", "detail": str(exc)}, 1)
    return out({"status": "verified", "name": manifest.name, "version": manifest.version}, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m patterns.edge_ai.client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hub", help="overrides MLSP_HUB_URL")
    parser.add_argument("--state", type=Path, help="overrides MLSP_STATE_DIR")
    parser.add_argument("--model", help="overrides MLSP_MODEL_NAME")
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="install the hub's version, if it verifies")
    sync.add_argument("--force", action="store_true", help="allow a downgrade or a blocked one")
    sync.add_argument(
        "--max-bytes",
        type=positive_int,
        help="fetch at most this many bytes now (a metered link)",
    )
    pred = sub.add_parser("predict", help="run the active model on rows")
    pred.add_argument("--rows", default="-", help='a file of {"instances": [...]}; - is stdin')
    sub.add_parser("rollback", help="switch back to the previous slot")
    sub.add_parser("status", help="the slots, the pointer, partial downloads")
    check = sub.add_parser("verify", help="check a manifest file's signature and fields")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"hub_url": args.hub, "state_dir": args.state, "model_name": args.model}.items()
        if v is not None
    }
    try:
        settings = DeviceSettings(service="edge-client", **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return out({"error": f"MLSP_{field.upper()}: {first['msg']}"}, 2)
    configure_logging(settings.service, settings.pattern, "WARNING")
    device = Device(settings)
    if args.command == "sync":
        result = device.sync(force=args.force, max_bytes=args.max_bytes)
        return out(result.as_json(), EXIT_CODES[result.status])
    if args.command == "rollback":
        result = device.rollback()
        return out(result.as_json(), EXIT_CODES[result.status])
    if args.command == "status":
        return out(device.status(), 0)
    if args.command == "verify":
        return verify_file(device, args.file)
    return predict(device, args.rows)


if __name__ == "__main__":
    sys.exit(main())

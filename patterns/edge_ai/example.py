"""edge_ai's worked example: the README's output, produced by running it (patterns/example.py).
The hub listens on 8000, device-sim on 8001; a second device is the command line on a folder
of its own (/tmp/mlsp-edge-device), as a phone would run it.

make example PATTERN=edge_ai
"""

from __future__ import annotations

import re

from patterns.edge_ai.pattern import DEV_KEY
from patterns.example import Walkthrough

HUB = "http://127.0.0.1:8000"
DEVICE = "http://127.0.0.1:8001"
MANIFEST = f"{HUB}/edge/models/digits-lr/manifest"
ROWS = "patterns/edge_ai/examples/digits.json"
CLIENT = f"MLSP_MANIFEST_KEY={DEV_KEY} .venv/bin/python -m patterns.edge_ai.client --hub {HUB}"
EDGE = f"{CLIENT} --state /tmp/mlsp-edge-device"
EXIT = '; echo "exit code $?"'
SHOW = (
    'python3 -c \'import json, sys; m = json.load(sys.stdin); m["card"] = '
    '"{...%d golden examples...}" % len(m["card"]["golden"]); print(json.dumps(m, indent=1))\''
)
LABELS = (
    "python3 -c 'import json, sys; b = json.load(sys.stdin); "
    'print(b["model"], [p["label"] for p in b["predictions"]])\''
)
PREDICT = f"curl -s {DEVICE}/predict -H 'Content-Type: application/json' --data @{ROWS}"
EDIT = "python3 -c 'import json, sys; m = json.load(sys.stdin); {}; json.dump(m, sys.stdout)'"

VOLATILE = [
    (re.compile(r'"(fetched|resumed_from)":\d+'), r'"\1":<n>'),
    (re.compile(r'"size": ?\d+'), '"size":<n>'),
    (re.compile(r"is \d+ bytes"), "is <n> bytes"),
    (re.compile(r"\d+ of \d+ bytes"), "<n> of <n> bytes"),
    (re.compile(r"bytes \d+-\d+/\d+"), "bytes <range>"),
]
"""A model trained again has other bytes: another size."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the hub's manifest: version, sha256, size, where the bytes are, the card the")
    w.note("device self-tests with, and the HMAC-SHA256 signature over all of it")
    w.sh(f"curl -s {MANIFEST} | {SHOW}", expect='"signature"')
    w.note("the bytes answer Range requests (206), so a cut download resumes")
    w.sh(
        f"curl -s -o /dev/null -D - -H 'Range: bytes=4000-' "
        f"{HUB}/edge/models/digits-lr/versions/1/model.onnx | grep -iE '^(HTTP|content-range)'",
        expect="206",
    )
    w.note("device-sim synced at start: slot a is active, and it predicts on the device")
    w.sh(
        f"curl -s {DEVICE}/edge/status | python3 -c 'import json, sys; "
        's = json.load(sys.stdin); print(s["active"], s["last_sync"]["status"])\'',
        expect="'slot': 'a'",
    )
    w.sh(f"{PREDICT} | {LABELS}", expect="'version': '1'")
    w.note("a device of your own: the command line on a folder; a metered link stops at")
    w.note("3000 bytes (exit 75: try again), the next sync resumes from there")
    w.sh("rm -rf /tmp/mlsp-edge-device /tmp/mlsp-edge-small")
    w.sh(f"{EDGE} sync --max-bytes 3000{EXIT}", expect='"status":"incomplete"')
    w.sh(f"{EDGE} sync{EXIT}", expect='"resumed_from":3000')
    w.sh(f"{EDGE} predict --rows {ROWS} | {LABELS}", expect="'version': '1'")
    w.sh(f"{EDGE} status", expect='"slot":"a"')

    w.section("failure")
    w.note("the hub stopped: the device keeps its model; sync says unreachable (exit 75)")
    w.sh("make stop PATTERN=edge_ai PROCESS=hub", expect="stopped")
    w.sh(f"{EDGE} sync{EXIT}", expect="exit code 75")
    w.sh(f"{EDGE} predict --rows {ROWS} | {LABELS}", expect="'version': '1'")
    w.until(f"curl -s {DEVICE}/readyz", "unreachable")
    w.sh(f"{PREDICT} | {LABELS}", expect="'version': '1'")
    w.note("device-sim crashes while the hub is away: it restarts on the model in its folder")
    w.sh("make kill PATTERN=edge_ai PROCESS=device-sim", expect="killed")
    w.until(
        "make status PATTERN=edge_ai", re.compile(r"device-sim +running +restarts=1 +\S+ +ready")
    )
    w.sh(f"{PREDICT} | {LABELS}", expect="'version': '1'")
    w.sh("make start PATTERN=edge_ai PROCESS=hub", expect="running")
    w.until(f"curl -s {HUB}/readyz", '"ready":true')
    w.note("a manifest changed after signing, and one without a signature: refused (exit 1)")
    tampered = EDIT.format('m["sha256"] = "0" * 64')
    w.sh(f"curl -s {MANIFEST} | {tampered} > /tmp/mlsp-edge-manifest.json")
    w.sh(f"{EDGE} verify /tmp/mlsp-edge-manifest.json{EXIT}", expect="does not match", code=0)
    unsigned = EDIT.format('m.pop("signature")')
    w.sh(f"curl -s {MANIFEST} | {unsigned} > /tmp/mlsp-edge-manifest.json")
    w.sh(f"{EDGE} verify /tmp/mlsp-edge-manifest.json{EXIT}", expect="unsigned")
    w.note("a device whose budget for digits-lr is 4000 bytes: refused before any download")
    w.sh(
        f"MLSP_SIZE_BUDGETS='{{\"digits-lr\": 4000}}' {CLIENT} --state /tmp/mlsp-edge-small "
        f"sync{EXIT}",
        expect="over this device's budget of 4000",
    )
    w.note("no earlier model to go back to yet: rollback refuses (exit 1)")
    w.sh(f"{EDGE} rollback{EXIT}", expect="no previous model")

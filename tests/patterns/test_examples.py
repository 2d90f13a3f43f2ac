"""The executable worked examples: every README block is what its walkthrough prints today.

Each pattern's walkthrough (patterns/<id>/example.py) runs against the pattern's real
processes, faults included; a README block that no longer matches its output (after volatile
values are normalised) fails here. Fix: `make docs`, then read the diff.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from patterns import example, runner
from patterns.example import normalise, readme_blocks, run_example

ROOT = Path(__file__).resolve().parents[2]
READMES = sorted([ROOT / "README.md", *ROOT.glob("patterns/*/README.md"), *ROOT.glob("docs/*.md")])


def free_base(count: int) -> int:
    """A first port with `count` free ports from it, away from the ephemeral range."""
    for _ in range(50):
        base = random.randrange(20_000, 30_000, 10)
        if not any(runner.port_open("127.0.0.1", base + i, 0.1) for i in range(count)):
            return base
    raise AssertionError("no free port range")


@pytest.mark.slow
@pytest.mark.parametrize("pattern_id", example.example_ids())
def test_readme_blocks_are_what_the_walkthrough_prints(data_dir: Path, pattern_id: str) -> None:
    pattern = runner.load(pattern_id)
    base = free_base(len(runner.serving(pattern)))
    printed = run_example(pattern_id, port=base, data_dir=data_dir, echo=lambda line: None)
    shown = readme_blocks(pattern_id)
    assert set(printed) <= set(shown), f"README has no block for {set(printed) - set(shown)}"
    extra = example.load_example(pattern_id).volatile
    for name, text in printed.items():
        assert normalise(shown[name], extra) == normalise(text, extra), (
            f"{pattern_id} README block {name!r} is stale: run `make docs`"
        )


def test_every_walkthrough_has_worked_and_failure_blocks() -> None:
    for pattern_id in example.example_ids():
        assert {"worked", "failure"} <= set(readme_blocks(pattern_id)), pattern_id


def test_normalise_hides_ids_timings_and_dependency_ports_only() -> None:
    a = '{"request_id":"6b5cceb8-2bc0-4cac-8dc0-14dcd4624645","latency_ms":3.2} pid 11 8000'
    b = '{"request_id":"0e9ea009-3316-4579-b6f4-758c979876e7","latency_ms":17} pid 42 8000'
    assert normalise(a) == normalise(b)
    assert normalise("redis://127.0.0.1:41234/0") == normalise("redis://127.0.0.1:35555/0")
    assert normalise("http://127.0.0.1:8001") != normalise("http://127.0.0.1:8002")
    assert normalise('"label":"setosa"') != normalise('"label":"virginica"')
    # a model trained again moves probabilities in the 4th digit, never its labels
    a = '{"label":"1","class_id":1,"probabilities":{"0":0.0058793663,"1":7.1e-1}}'
    b = '{"label":"1","class_id":1,"probabilities":{"0":0.005875461,"1":0.7193502}}'
    assert normalise(a) == normalise(b)
    assert normalise(a) != normalise(a.replace('"label":"1"', '"label":"7"'))
    assert normalise('"confidence": 0.8983') == normalise('"confidence": 0.8984')
    assert normalise("card says 05e12f4c37c5…") == normalise("card says e703daec9d27…")
    # `curl -i` headers compare in any order; their values and the body still count
    one = "HTTP/1.1 503 X\nretry-after: 2\ncontent-type: a\n\n{}\nz: 1\ny: 2"
    other = "HTTP/1.1 503 X\ncontent-type: a\nretry-after: 2\n\n{}\nz: 1\ny: 2"
    assert normalise(one) == normalise(other)
    assert normalise(one) != normalise(one.replace("retry-after: 2", "retry-after: 5"))
    assert normalise(one) != normalise(one.replace("z: 1\ny: 2", "y: 2\nz: 1"))


CURL_SHORTHAND = re.compile(r"curl\b[^\n]*?\s:\d{2,5}\b|curl\b[^\n]*?\slocalhost:\d")


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_commands_use_full_urls(readme: Path) -> None:
    """Debian's curl 7.88 refuses `curl :8000/...` (exit 3): every URL is spelled out."""
    text = readme.read_text()
    assert not CURL_SHORTHAND.findall(text), CURL_SHORTHAND.findall(text)

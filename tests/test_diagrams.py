"""The READMEs' pictures: each pattern's Architecture section has a Mermaid diagram naming every
process its pattern.py declares, and the top README's picture names every pattern.

Nothing is rendered here (no mermaid-cli): the syntax check is a conservative lint of the
forms these diagrams use (quoted labels, `flowchart LR` or `sequenceDiagram`, at most 15 nodes),
not a Mermaid parser. No process is started.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from patterns import runner

ROOT = Path(__file__).resolve().parents[1]
MERMAID = re.compile(r"^```mermaid\n(.*?)^```$", re.M | re.S)
MAX_NODES = 15

# Flowchart lines once every quoted string is replaced by "": a node is an id, optionally with
# a shape around a quoted label; a link has spaces around it and an optional quoted label.
NODE = r'[A-Za-z_]\w*(?:\(\[""\]\)|\[\(""\)\]|\[""\]|\(""\)|\{""\})?'
NODES = rf"{NODE}(?:\s+&\s+{NODE})*"
LINK = r'\s+(?:-->|-\.->|==>|---)(?:\|""\|)?\s+'
STATEMENT = re.compile(rf"{NODES}(?:{LINK}{NODES})*")
SUBGRAPH = re.compile(r'subgraph\s+[A-Za-z_]\w*(?:\[""\])?')
RESERVED = {"end", "subgraph", "graph", "flowchart", "style", "class", "click"}
# Sequence diagrams: participants, messages between them, notes.
PARTICIPANT = re.compile(r"participant\s+(\w+)(?:\s+as\s+\S.*)?")
MESSAGE = re.compile(r"(\w+)\s*(?:->>|-->>|-x|--x|-\)|--\))\s*(\w+)\s*:\s*\S.*")
NOTE = re.compile(r"Note\s+(?:over|left of|right of)\s+(\w+)(?:\s*,\s*(\w+))?\s*:\s*\S.*")


def section(text: str, heading: str) -> str:
    """From `heading` to the next second-level heading."""
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def mermaid(text: str) -> list[str]:
    return MERMAID.findall(text)


def named(name: str, text: str) -> bool:
    """`name` as a word of its own (so `api` is not found in `asynchronous-api`)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def lint(block: str) -> tuple[list[str], set[str]]:
    """Problems found in one Mermaid block, and its node (or participant) ids."""
    lines = [
        ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("%%")
    ]
    kind, body = lines[0], lines[1:]
    problems: list[str] = []
    ids: set[str] = set()
    if kind == "flowchart LR":
        for line in body:
            labels = re.findall(r'"([^"\n]*)"', line)
            bare = re.sub(r'"[^"\n]*"', '""', line)
            if bare == "end" or SUBGRAPH.fullmatch(bare):
                continue
            if not STATEMENT.fullmatch(bare):
                problems.append(f"not a plain node/link line (unquoted label?): {line}")
                continue
            found = set(
                re.findall(r"(?:^|\s)([A-Za-z_]\w*)", re.sub(r'[\[\(\{|]""[\]\)\}|]', "", bare))
            )
            problems += [f"reserved word as a node id: {i}" for i in found & RESERVED]
            ids |= found
            # Mermaid 10+ reads a label that starts like a Markdown list as one ("Unsupported
            # markdown: list").
            problems += [
                f"label reads as a list: {t}" for t in labels if re.match(r"\d+\. |[-*+] ", t)
            ]
    elif kind == "sequenceDiagram":
        for line in body:
            if m := PARTICIPANT.fullmatch(line):
                ids.add(m.group(1))
                continue
            m = MESSAGE.fullmatch(line) or NOTE.fullmatch(line)
            if m is None and line != "autonumber":
                problems.append(f"not a participant, message or note line: {line}")
                continue
            # `;` ends a statement and `#` starts an entity code in sequence diagram text.
            if ";" in line or "#" in line:
                problems.append(f"';' or '#' in text: {line}")
            unknown = {p for p in (m.groups() if m else ()) if p} - ids
            problems += [f"undeclared participant {p}: {line}" for p in sorted(unknown)]
    else:
        problems.append(f"first line is {kind!r}, not 'flowchart LR' or 'sequenceDiagram'")
    return problems, ids


@pytest.mark.parametrize("pattern_id", runner.pattern_ids())
def test_architecture_has_a_mermaid_diagram_naming_every_process(pattern_id: str) -> None:
    readme = (ROOT / "patterns" / pattern_id / "README.md").read_text()
    blocks = mermaid(section(readme, "## Architecture"))
    assert blocks, f"patterns/{pattern_id}/README.md: no ```mermaid block under ## Architecture"
    # Every declared process, init processes and Jobs included (seed, score, warmup,
    # model-loader, the synchronous client): they are part of the picture.
    declared = [p.name for p in runner.load(pattern_id).processes]
    missing = [name for name in declared if not any(named(name, b) for b in blocks)]
    assert not missing, f"{pattern_id}: the Architecture diagram does not name {missing}"
    for block in blocks:
        problems, ids = lint(block)
        assert not problems, f"{pattern_id}: {problems}"
        assert len(ids) <= MAX_NODES, f"{pattern_id}: {len(ids)} nodes, at most {MAX_NODES}"


def test_top_readme_picture_names_every_pattern() -> None:
    blocks = mermaid((ROOT / "README.md").read_text())
    assert blocks, "README.md: no ```mermaid block"
    for block in blocks:
        problems, _ = lint(block)
        assert not problems, f"README.md: {problems}"
    missing = [p for p in runner.pattern_ids() if not any(named(p, b) for b in blocks)]
    assert not missing, f"README.md: the picture does not name {missing}"


def test_lint_catches_what_github_would_misrender() -> None:
    ok = 'flowchart LR\n    a["POST /predict"]\n    a -->|"GET key"| b(["b"]) & c\n'
    assert lint(ok) == ([], {"a", "b", "c"})
    for bad in (
        "graph TD\n    a --> b\n",
        "flowchart LR\n    a[POST /predict (v2)]\n",
        "flowchart LR\n    a -->|GET key| b\n",
        'flowchart LR\n    a["1. first"]\n',
        "flowchart LR\n    a --> end\n",
        "sequenceDiagram\n    participant a\n    a->>b: hello\n",
        "sequenceDiagram\n    participant a\n    participant b\n    a->>b: x; y\n",
    ):
        assert lint(bad)[0], bad

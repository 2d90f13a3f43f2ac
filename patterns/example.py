"""Executable worked examples: each pattern's README output, produced by running it.

A pattern's `patterns/<id>/example.py` defines `walk(w: Walkthrough)`: the shell commands of
its README's "Worked example" and "Failure behaviour" sections, fault steps included (`make
stop`, `make kill`, a passed deadline). The walkthrough starts the pattern's real processes
as `make run` does (supervised, on ports 8000, 8001, ... in declaration order), runs every
command with bash exactly as written, checks what each must show, and prints the command and
its real output:

    make example PATTERN=async           # run it, print every step; exit 1 if one fails
    make docs                            # every pattern: rewrite the README blocks

A README's generated blocks sit between `<!-- example:NAME -->` and `<!-- /example:NAME -->`;
tests/patterns/test_examples.py runs every walkthrough again and fails when a block no longer
matches what it prints, after volatile values (ids, timings, pids, ports of dependencies) are
normalised. Never edit a block by hand: change the walkthrough, then `make docs`.

Commands are written with the URLs a reader uses (http://127.0.0.1:8000); when the examples
run on other ports (the tests do), the commands are run with the real ports and the output is
shown with the reader's again; a path under `data/` likewise names the run's data folder, and
MLSP_PORT (a server's default, 8000) is the first process's port.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from patterns.runner import ROOT, RunnerError, RunningPattern, load, serving, start_pattern

README_PORT = 8000
STEP_TIMEOUT = 60.0
Expect = str | re.Pattern[str] | Callable[[str], bool]
"""What a step's output must show: a substring, a regex (searched), or a predicate."""

NUMBER = re.compile(r"-?\d+(\.\d+)?(e[+-]?\d+)?")
Replacement = str | Callable[[re.Match[str]], str]


def _numbers_masked(match: re.Match[str]) -> str:
    return NUMBER.sub("<p>", match.group(0))


VOLATILE: list[tuple[re.Pattern[str], Replacement]] = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"(?im)^(date|x-request-id|content-length):.*$"), r"\1: <volatile>"),
    (re.compile(r"(?i)(pid )\d+"), r"\g<1><pid>"),
    (re.compile(r"(redis|postgresql|http)://(\w+@)?127\.0\.0\.1:(?!80\d\d\b)\d+"), r"\1://<dep>"),
    (re.compile(r'("?\w*(?:_ms|latency\w*|_seconds|_at|elapsed)"?\s*[:=]\s*)[\d.e+-]+'), r"\1<n>"),
    (re.compile(r"\b\d+(\.\d+)? ?(ms|s)\b"), "<duration>"),
    # A model trained again (make models, the tests' data folder) is not bit-identical:
    # probabilities and confidences move in the 4th digit; labels and classes do not.
    (re.compile(r'"(?:probabilities|scores)"\s*:\s*\{[^{}]*\}'), _numbers_masked),
    # ... the same probabilities as an OIP v2 FP32 output tensor
    (re.compile(r'"datatype":"FP32","shape":\[[\d,]*\],"data":\[[^\]]*\]'), _numbers_masked),
    # ... and its model.onnx has other bytes, so another sha256 (full, or 12 digits and …)
    (re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}…"), "<sha256>"),
    (re.compile(r'("?(?:confidence|probability|score)"?\s*[:=]\s*)[\d.e+-]+'), r"\1<p>"),
]
"""Values that differ from run to run, replaced before a README block is compared."""
DATA_PATH = re.compile(r"(?<![\w./~-])data/|(?<=sqlite:///)data/")
"""A repository-relative path into the data folder, as a command names it (`data/models/...`,
`sqlite:///data/x.db`)."""


class ExampleFailed(AssertionError):
    """A step did not show what it must."""


def _sorted_headers(lines: list[str]) -> list[str]:
    """Response header lines (after `curl -i`'s status line, up to the blank line) in name
    order: their order carries no meaning and changes with the code that adds them."""
    out: list[str] = []
    block: list[str] | None = None
    for line in lines:
        if block is not None and line:
            block.append(line)
            continue
        if block is not None:
            out += sorted(block, key=str.lower)
            block = None
        out.append(line)
        if line.startswith("HTTP/1.1 "):
            block = []
    return out + sorted(block or [], key=str.lower)


def normalise(text: str, extra: list[tuple[re.Pattern[str], Replacement]] | None = None) -> str:
    for pattern, replacement in [*(extra or []), *VOLATILE]:
        text = pattern.sub(replacement, text)
    return "\n".join(_sorted_headers([line.rstrip() for line in text.strip().splitlines()]))


CODE = "-w ' %{http_code}\\n'"
"""curl's flag that prints the HTTP status after the body (` 422` at the end of the output)."""


def status_is(code: int, *shows: str) -> Callable[[str], bool]:
    """An `expect`: the output ends with the status `code` (printed by CODE) and shows each
    of `shows`."""
    return lambda out: out.rstrip().endswith(f" {code}") and all(s in out for s in shows)


def curl_json(url: str, body: object, *, flags: str = "-s") -> str:
    """`curl FLAGS URL -H 'Content-Type: application/json' -d '<body as compact JSON>'`."""
    data = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    if "'" in data:
        raise ValueError("a body with ' cannot be single-quoted for the shell")
    return f"curl {flags} {url} -H 'Content-Type: application/json' -d '{data}'"


def _matches(expect: Expect, output: str) -> bool:
    if isinstance(expect, str):
        return expect in output
    if isinstance(expect, re.Pattern):
        return expect.search(output) is not None
    return expect(output)


# Set by an outer make (`make test`, `make docs`): a `make` inside a step would then print
# "make[1]: Entering directory ..." into the output, which a reader's shell never shows.
MAKE_VARIABLES = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")


def reader_environ() -> dict[str, str]:
    """The environment of a reader's shell: this process's, without an outer make's."""
    return {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}


@dataclass
class Walkthrough:
    """The running pattern and the blocks its steps print into."""

    running: RunningPattern
    port_map: Mapping[str, str]
    """Reader's `127.0.0.1:PORT` -> this run's."""
    run_env: Mapping[str, str]
    echo: Callable[[str], None] = print
    data_dir: Path | None = None
    """This run's data folder: a command's `data/...` path is run as `<data_dir>/...`, and the
    folder is shown as `data` again (the tests run on a data folder of their own)."""
    blocks: dict[str, list[str]] = field(default_factory=dict)
    current: str = "worked"
    shell: dict[str, str] = field(default_factory=dict)
    """Shell variables earlier steps assigned (`sh(..., keep="JOB")`), set for every later step
    as the reader's one terminal would keep them (each step runs in a bash of its own)."""

    def section(self, name: str) -> None:
        """Following steps print into the README block `name` (worked, failure, ...)."""
        self.current = name
        self.echo(f"\n## {name}")

    def _put(self, text: str) -> None:
        self.blocks.setdefault(self.current, []).append(text)
        self.echo(text)

    def note(self, text: str) -> None:
        """A comment line in the block (`# text`)."""
        for line in text.splitlines():
            self._put(f"# {line}".rstrip())

    def _to_run(self, command: str) -> str:
        for shown, real in self.port_map.items():
            command = command.replace(shown, real)
        if self.data_dir is not None:
            command = DATA_PATH.sub(lambda m: f"{self.data_dir}/", command)
        return command

    def _to_show(self, output: str) -> str:
        for shown, real in self.port_map.items():
            output = output.replace(real, shown)
        if self.data_dir is not None:
            output = output.replace(f"{self.data_dir}/", "data/")
        return output

    def _exec(self, command: str, timeout: float, keep: str | None = None) -> tuple[int, str]:
        script = self._to_run(command)
        with tempfile.NamedTemporaryFile("r", prefix="mlsp-keep-") as kept:
            if keep is not None:
                if not keep.isidentifier():
                    raise ValueError(f"keep={keep!r} is not a shell variable name")
                script += f'\n__rc=$?; printf %s "${keep}" >{kept.name}; exit $__rc'
            try:
                done = subprocess.run(
                    ["bash", "-o", "pipefail", "-c", script],
                    cwd=ROOT,
                    env={**reader_environ(), **self.run_env, **self.shell},
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise ExampleFailed(f"`{command}` took more than {timeout:.0f} s") from exc
            if keep is not None:
                self.shell[keep] = kept.read()
        return done.returncode, self._to_show(done.stdout + done.stderr)

    def sh(
        self,
        command: str,
        *,
        expect: Expect | None = None,
        code: int = 0,
        timeout: float = STEP_TIMEOUT,
        keep: str | None = None,
    ) -> str:
        """Run `command` with bash as written; print it and its output; check both. `keep`:
        the shell variable the command assigns (`JOB=$(curl ...)`), kept for later steps."""
        status, output = self._exec(command, timeout, keep)
        self._put(f"$ {command}")
        if output.strip():
            self._put(output.rstrip("\n"))
        if status != code:
            raise ExampleFailed(f"`{command}` exited {status}, expected {code}:\n{output}")
        if expect is not None and not _matches(expect, output):
            raise ExampleFailed(f"`{command}` did not show {expect!r}:\n{output}")
        return output

    def until(
        self, command: str, expect: Expect, *, within: float = 30.0, every: float = 0.2
    ) -> str:
        """Repeat `command` until its output shows `expect`; print the last run only."""
        deadline = time.monotonic() + within
        while True:
            status, output = self._exec(command, STEP_TIMEOUT)
            if status == 0 and _matches(expect, output):
                return self.sh(command, expect=expect)
            if time.monotonic() > deadline:
                raise ExampleFailed(f"`{command}` never showed {expect!r} in {within:.0f} s")
            time.sleep(every)


@dataclass(frozen=True)
class Example:
    """What a pattern's example module declares."""

    walk: Callable[[Walkthrough], None]
    process_env: Mapping[str, Mapping[str, str]]
    """Per-process knobs, as `make run ... ENV="proc:NAME=VALUE"` (shown in the block)."""
    volatile: list[tuple[re.Pattern[str], Replacement]]


def example_ids() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "patterns").glob("*/example.py"))


def load_example(pattern_id: str) -> Example:
    module = importlib.import_module(f"patterns.{pattern_id}.example")
    return Example(
        module.walk,
        getattr(module, "PROCESS_ENV", {}),
        getattr(module, "VOLATILE", []),
    )


def run_command(pattern_id: str, process_env: Mapping[str, Mapping[str, str]]) -> str:
    knobs = " ".join(f"{p}:{k}={v}" for p, env in process_env.items() for k, v in env.items())
    return f"make run PATTERN={pattern_id}" + (f' ENV="{knobs}"' if knobs else "")


@contextlib.contextmanager
def walkthrough(
    pattern_id: str,
    *,
    port: int = README_PORT,
    data_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> Iterator[Walkthrough]:
    """Start the pattern as `make run` would and hand out a Walkthrough over it."""
    pattern = load(pattern_id)
    example = load_example(pattern.id)
    names = [p.name for p in serving(pattern)]
    port_map = {f"127.0.0.1:{README_PORT + i}": f"127.0.0.1:{port + i}" for i in range(len(names))}
    with tempfile.TemporaryDirectory(prefix="mlsp-example-") as tmp:
        run_base = Path(tmp) / "run"
        # A server started by hand binds the first process's port by default, as the
        # reader's would (8000) once that process is stopped.
        env = {"MLSP_RUN_DIR": str(run_base), "MLSP_PORT": str(port)}
        if data_dir is not None:
            env["MLSP_DATA_DIR"] = str(data_dir)
        with start_pattern(
            pattern.id,
            data_dir=data_dir,
            first_port=port,
            process_env=example.process_env,
            supervise=True,
            run_dir=run_base / pattern.id,
            say=lambda message: None,
        ) as running:
            data = data_dir or Path(os.environ.get("MLSP_DATA_DIR", ROOT / "data"))
            w = Walkthrough(running, port_map, env, echo, data_dir=data.resolve())
            w.note(f"in another terminal: {run_command(pattern.id, example.process_env)}")
            yield w


def run_example(
    pattern_id: str,
    *,
    port: int = README_PORT,
    data_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, str]:
    """Run a pattern's walkthrough; its blocks as README text."""
    with walkthrough(pattern_id, port=port, data_dir=data_dir, echo=echo) as w:
        load_example(w.running.pattern.id).walk(w)
        return {name: "\n".join(lines) for name, lines in w.blocks.items()}


# --- README blocks ------------------------------------------------------------------------

BLOCK = re.compile(
    r"(<!-- example:(?P<name>[\w-]+) -->\n)```console\n(?:(?P<body>.*?)\n)?```\n"
    r"(<!-- /example:(?P=name) -->)",
    re.S,
)


def readme_path(pattern_id: str) -> Path:
    return ROOT / "patterns" / pattern_id / "README.md"


def readme_blocks(pattern_id: str) -> dict[str, str]:
    text = readme_path(pattern_id).read_text()
    return {m["name"]: m["body"] or "" for m in BLOCK.finditer(text)}


def write_blocks(pattern_id: str, blocks: Mapping[str, str]) -> list[str]:
    """Rewrite the README's marked blocks; the names of blocks it has no marker for."""
    path = readme_path(pattern_id)
    text = path.read_text()
    found = {m["name"] for m in BLOCK.finditer(text)}

    def replace(m: re.Match[str]) -> str:
        body = blocks.get(m["name"], m["body"] or "")
        return f"{m.group(1)}```console\n{body}\n```\n{m.group(4)}"

    path.write_text(BLOCK.sub(replace, text))
    return sorted(set(blocks) - found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patterns.example", description=__doc__)
    parser.add_argument("patterns", nargs="*", help="pattern ids or aliases (default: all)")
    parser.add_argument("--port", type=int, default=README_PORT)
    parser.add_argument("--write", action="store_true", help="rewrite the README blocks")
    args = parser.parse_args(argv)
    ids = [load(p).id for p in args.patterns] if args.patterns else example_ids()
    failed = 0
    for pid in ids:
        print(f"# === {pid}", flush=True)
        try:
            blocks = run_example(pid, port=args.port)
        except (ExampleFailed, RunnerError) as exc:
            print(f"FAILED {pid}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.write:
            missing = write_blocks(pid, blocks)
            if missing:
                print(f"FAILED {pid}: README has no marker for {missing}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

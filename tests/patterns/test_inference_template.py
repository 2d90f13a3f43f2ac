"""inference_template: the spec, the render (golden files, reruns, --force), the rendered
overlay's validity, and the rendered service running as real processes (MLflow, the loader,
the shared server) passing its generated smoke test and the OIP v2 conformance suite."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kube import manifests
from patterns.inference_template.render import STAMP, render
from patterns.inference_template.spec import TEMPLATE_VERSION, config_env, load_spec
from patterns.runner import RunnerError, RunningPattern, start_pattern
from serving import oip_conformance

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "patterns" / "inference_template" / "examples"
SPEC = EXAMPLES / "iris-rf.yaml"
GOLDEN = EXAMPLES / "iris-rf"


def new(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "patterns.inference_template", "new", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def write_spec(tmp_path: Path, **changes: object) -> Path:
    spec = yaml.safe_load(SPEC.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = spec
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --- the render ---------------------------------------------------------------------------


def test_the_checked_in_example_is_what_the_template_renders() -> None:
    """Golden files: rendering the example spec again gives the committed bytes."""
    rendered = render(SPEC, Path("patterns/inference_template/examples/iris-rf"))
    assert {k: v.encode() for k, v in rendered.items()} == tree(GOLDEN)


def test_a_rerun_is_byte_identical_and_overwriting_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "svc"
    assert new("--spec", SPEC, "--out", out).returncode == 0
    first = tree(out)
    again = new("--spec", SPEC, "--out", out)
    assert again.returncode == 2
    assert "pass --force to replace them" in again.stderr and "README.md" in again.stderr
    assert tree(out) == first
    assert new("--spec", SPEC, "--out", out, "--force").returncode == 0
    assert tree(out) == first


def test_the_template_version_is_in_every_file(tmp_path: Path) -> None:
    out = tmp_path / "svc"
    new("--spec", SPEC, "--out", out)
    files = tree(out)
    assert len(files) == 10
    stamp = f"patterns.inference_template (template v{TEMPLATE_VERSION})".encode()
    assert all(stamp in text for text in files.values()), [
        n for n, t in files.items() if stamp not in t
    ]


def test_force_removes_what_the_spec_no_longer_makes_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "svc"
    new("--spec", SPEC, "--out", out)
    (out / "overlay" / "notes.txt").write_text("mine")
    one = write_spec(tmp_path, replicas=1)
    assert new("--spec", one, "--out", out, "--force").returncode == 0
    assert not (out / "overlay" / "pdb.yaml").exists()
    assert (out / "overlay" / "notes.txt").read_text() == "mine"
    assert "pdb.yaml" not in (out / "overlay" / "kustomization.yaml").read_text()


def test_force_leaves_files_it_does_not_make_even_with_the_stamp(tmp_path: Path) -> None:
    """`--out .` in the pattern's folder: its own sources name the stamp; --force keeps them."""
    out = tmp_path / "svc"
    stamped = f"# {STAMP.format(version=TEMPLATE_VERSION)}\n"
    names = ("render.py", "README.md.j2", "examples/iris-rf/README.md", "overlay/extra.yaml")
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(stamped)
    assert new("--spec", SPEC, "--out", out, "--force").returncode == 0
    for name in names:
        assert (out / name).read_text() == stamped, name


def test_a_one_row_batch_limit_renders_a_locustfile_without_batches(tmp_path: Path) -> None:
    one = write_spec(tmp_path, max_batch=1, examples=[[5.1, 3.5, 1.4, 0.2]])
    files = render(one, tmp_path / "svc")
    assert "predict_batch" not in files["locustfile.py"]
    compile(files["locustfile.py"], "locustfile.py", "exec")
    two = write_spec(tmp_path, max_batch=3)
    assert "random.randint(2, 3)" in render(two, tmp_path / "svc")["locustfile.py"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": None}, "labels: Field required"),
        ({"model__uri": "s3://bucket/model"}, "model.uri: String should match pattern"),
        ({"model__uri": "models:/iris-lr@production"}, "model: uri names 'iris-lr'"),
        ({"examples": [[1.0, 2.0]]}, "examples[0] has 2 values, the input has 4 features"),
        ({"replicas": 0}, "replicas: Input should be greater than or equal to 1"),
        ({"name": "Iris_RF"}, "name: String should match pattern"),
        ({"input__features": ["a", "a"]}, "input.features: feature names must be unique"),
        ({"labels": ["set osa"]}, "labels[0]: String should match pattern"),
        ({"resources__cpu_limit": "lots"}, "resources.cpu_limit: String should match pattern"),
        ({"gpu": True}, "gpu: Extra inputs are not permitted"),
        ({"name": "1st"}, "name: String should match pattern"),
        ({"description": "two\nlines"}, "description: one line of text"),
        ({"description": "a\u2028replicas: 9"}, "description: one line of text"),
        ({"description": "a\u0085b"}, "description: one line of text"),
        ({"description": "a\u2029b"}, "description: one line of text"),
        ({"max_batch": 2}, "examples: 3 rows, more than max_batch (2)"),
        ({"examples": [[1.0, 2.0, float("nan"), 4.0]]}, "examples[0][2]: Input should be a finite"),
    ],
)
def test_a_bad_spec_exits_2_naming_the_field(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    done = new("--spec", write_spec(tmp_path, **changes), "--out", tmp_path / "svc")
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "svc").exists()


def test_unreadable_specs_exit_2(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    (tmp_path / "deep.yaml").write_text("[" * 20_000 + "]" * 20_000)
    (tmp_path / "a\u2028b.yaml").write_text(SPEC.read_text())
    for spec, message in (
        (tmp_path / "missing.yaml", "cannot read"),
        (tmp_path / "list.yaml", "a spec is a mapping"),
        (tmp_path / "broken.yaml", "not YAML"),
        (tmp_path / "deep.yaml", "nested too deeply"),
        (tmp_path / "a\u2028b.yaml", "the file name has a control or line-break character"),
    ):
        done = new("--spec", spec, "--out", tmp_path / "svc")
        assert (done.returncode, message in done.stderr) == (2, True), done.stderr


@pytest.mark.slow
def test_any_rendered_overlay_passes_strict_validation(tmp_path: Path) -> None:
    """Not only the example: another model, one replica, other resources."""
    spec = write_spec(
        tmp_path,
        name="digits",
        model={"name": "digits-lr", "uri": "models:/digits-lr/1"},
        input={"name": "X", "features": [f"pixel_{i}" for i in range(64)]},
        labels=[str(i) for i in range(10)],
        preprocessing={"name": "digits-8x8", "version": "1"},
        examples=[[0.0] * 64],
        replicas=1,
        resources={"cpu_limit": "500m", "memory_limit": "1Gi"},
    )
    assert new("--spec", spec, "--out", tmp_path / "svc").returncode == 0
    docs = manifests.load(manifests.render(tmp_path / "svc" / "overlay"))
    errors = manifests.schema_errors(docs) + manifests.baseline_errors(docs)
    assert errors == []
    assert {d["kind"] for d in docs} == {
        "ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy"
    }  # fmt: skip
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert config["MLSP_EXPECT_PREPROCESS"] == "digits-8x8@1"
    assert config == config_env(load_spec(spec))


# --- the rendered service, running ----------------------------------------------------------


@pytest.fixture(scope="module")
def service(data_dir: Path) -> Iterator[RunningPattern]:
    with start_pattern("inference_template", data_dir=data_dir, ready_timeout=90) as run:
        yield run


@pytest.mark.slow
def test_the_service_serves_the_model_its_spec_names(service: RunningPattern) -> None:
    card = httpx.get(f"{service.url('api')}/metadata").json()
    assert (card["name"], card["labels"]) == ("iris-rf", ["setosa", "versicolor", "virginica"])
    rows = load_spec(SPEC).examples
    resp = httpx.post(f"{service.url('api')}/predict", json={"instances": rows})
    labels = [p["label"] for p in resp.json()["predictions"]]
    assert labels == ["setosa", "versicolor", "virginica"]


@pytest.mark.slow
def test_the_generated_smoke_test_passes(service: RunningPattern) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(GOLDEN / "test_smoke.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "SMOKE_URL": service.url("api")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert f"{4 + len(oip_conformance.CHECKS)} passed" in done.stdout


@pytest.mark.slow
@oip_conformance.each_check
def test_the_service_conforms_to_oip_v2(
    service: RunningPattern, oip_check: oip_conformance.Check
) -> None:
    oip_check.verify(service.url("api"), "iris-rf")


@pytest.mark.slow
def test_a_model_the_spec_does_not_describe_is_refused(data_dir: Path) -> None:
    """The alias now points at another model: the loader fetches it, the server refuses it."""
    moved = {"model-loader": {"MLSP_MODEL_URI": "models:/iris-lr@production"}}
    with (
        pytest.raises(
            RunnerError, match="not the configured model: model: the model has 'iris-lr'"
        ),
        start_pattern("inference_template", data_dir=data_dir, process_env=moved),
    ):
        pass

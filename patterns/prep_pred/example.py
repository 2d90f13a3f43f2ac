"""prep_pred's worked example: the README's output, produced by running it (patterns/example.py).

make example PATTERN=prep_pred

The input files in patterns/prep_pred/examples/ are sample 3 of scikit-learn's digits (a 3)
drawn by `serving.preprocessing.render_digit`, and the tensor prep makes of the PNG.
"""

from __future__ import annotations

from patterns.example import CODE, Walkthrough

PRED = "http://127.0.0.1:8000"
PREP = "http://127.0.0.1:8001"
IMAGE = f"{PREP}/predict/image"
INFER = f"{PRED}/v2/models/digits-lr/infer"
FILES = "patterns/prep_pred/examples"


def upload(path: str, media: str = "image/png", flags: str = "-s", url: str = IMAGE) -> str:
    return f"curl {flags} {url} -H 'Content-Type: {media}' --data-binary @{path}"


def infer(edit: str | None = None) -> str:
    """pred's OIP infer call with the shipped tensor, `edit` (a sed script) applied first."""
    if edit is None:
        return f"curl -s {INFER} -H 'Content-Type: application/json' -d @{FILES}/tensor.json"
    return (
        f"sed '{edit}' {FILES}/tensor.json | "
        f"curl -s {CODE} {INFER} -H 'Content-Type: application/json' -d @-"
    )


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("a 64x64 PNG and a 300x200 JPEG of the same digit: prep decodes, pred predicts")
    w.sh(upload(f"{FILES}/digit-64x64.png"), expect='"label":"3"')
    w.sh(upload(f"{FILES}/digit-300x200.jpg", "image/jpeg"), expect='"label":"3"')
    w.note("what prep sends pred: 64 floats, stamped with the preprocessing version")
    w.sh(infer(), expect='"name":"label","datatype":"INT64","shape":[1],"data":[3]')
    w.note("pred takes tensors only")
    w.sh(
        upload(f"{FILES}/digit-64x64.png", flags=f"-s {CODE}", url=f"{PRED}/predict/image"),
        expect=" 404",
    )

    w.section("failure")
    w.note("bad uploads stop at prep; pred is not called")
    w.sh(f"curl -s {CODE} {IMAGE} -H 'Content-Type: text/plain' -d 'hello'", expect=" 415")
    w.sh(upload(f"{FILES}/wide-5000x10.png", flags=f"-s {CODE}"), expect=" 413")
    w.sh(
        f"head -c 6000000 /dev/zero | curl -s {CODE} {IMAGE} "
        "-H 'Content-Type: image/png' --data-binary @-",
        expect=" 413",
    )
    w.sh(
        f"head -c 100 {FILES}/digit-64x64.png | curl -s {CODE} {IMAGE} "
        "-H 'Content-Type: image/png' --data-binary @-",
        expect=" 400",
    )
    w.note("the skew guard: pred refuses a tensor made for another preprocessing version, or none")
    w.sh(infer('s/"preprocess_version":"1"/"preprocess_version":"0"/'), expect='"code":"skew"')
    w.sh(infer('s/,"parameters":{[^}]*}//'), expect='"got":null')
    w.sh(infer("s/FP32/FP64/"), expect='"field":"inputs[0].datatype"')
    w.note("a deadline already spent when the request arrives")
    w.sh(
        f'curl -s {CODE} {IMAGE} -H "X-Request-Deadline-Ms: $(( $(date +%s%3N) + 1 ))" '
        f"-H 'Content-Type: image/png' --data-binary @{FILES}/digit-64x64.png",
        expect=" 504",
    )
    w.note("pred goes away (held down, as if scaled to 0)")
    w.sh("make stop PATTERN=prep_pred PROCESS=pred", expect="pred: stopped")
    w.sh(upload(f"{FILES}/digit-64x64.png", flags="-si"), expect='"dependency":"pred"')
    w.note("prep stays ready: it still refuses bad input on its own")
    w.sh(f"curl -s {PREP}/readyz", expect='"ready":true')
    w.sh(f"curl -s {CODE} {IMAGE} -H 'Content-Type: text/plain' -d 'hello'", expect=" 415")
    w.sh(
        f"curl -s {PREP}/metrics | grep ^mlsp_dependency_up",
        expect='mlsp_dependency_up{dependency="pred",service="prep-pred-prep"} 0.0',
    )
    w.sh("make start PATTERN=prep_pred PROCESS=pred", expect="pred: running")
    w.until("make status PATTERN=prep_pred", "http://127.0.0.1:8000  ready")
    w.sh(upload(f"{FILES}/digit-64x64.png"), expect='"label":"3"')

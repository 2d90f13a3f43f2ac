"""The training pipeline: data -> train -> evaluate -> export -> register.

Each step is a module with a `run(...)` function, executed through `training.steps.run_step`,
which gives it a content-addressed cache: a step whose inputs, parameters and code are unchanged
is a no-op, so a rerun resumes where the last one failed. Models are persisted as ONNX only.
"""

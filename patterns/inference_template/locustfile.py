"""Load for inference_template's example service (iris-rf): varied iris rows, batches of 1-32,
OIP v2 calls, bad input. A rendered service has its own locustfile (the spec's examples).

make loadtest PATTERN=inference_template SECONDS=30 USERS=20
"""

from bench.users import IrisUser


class InferenceTemplateUser(IrisUser):
    model = "iris-rf"

"""Load for pipeline_training's api (the registered candidate): iris rows, batches of 1-32,
OIP v2 calls, bad input.

make loadtest PATTERN=pipeline_training SECONDS=30 USERS=20
"""

from bench.users import IrisUser


class PipelineTrainingUser(IrisUser):
    pass

"""Load for model_load: iris rows, batches of 1-32, OIP v2 calls, bad input.

make loadtest PATTERN=model_load SECONDS=30 USERS=20
"""

from bench.users import IrisUser


class ModelLoadUser(IrisUser):
    pass

"""Load for model_in_image: iris rows, batches of 1-32, OIP v2 calls, bad input.

make loadtest PATTERN=model_in_image SECONDS=30 USERS=20
"""

from bench.users import IrisUser


class ModelInImageUser(IrisUser):
    pass

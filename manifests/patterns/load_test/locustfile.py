"""Load for web_single: varied iris rows, batches of 1-32, OIP v2 calls, bad input.

make loadtest PATTERN=web_single SECONDS=30 USERS=20
"""

from bench.users import IrisUser


class WebSingleUser(IrisUser):
    pass

"""Load for load_test: its target is web_single, so web_single's users (varied iris rows,
batches of 1-32, OIP v2 calls, bad input that must be a 422).

python -m patterns.load_test run load_test --steps 10:20,50:20,100:20
"""

from patterns.web_single.locustfile import WebSingleUser

__all__ = ["WebSingleUser"]

"""Load for prediction_monitoring's entry, the monitor: people and dashboards reading the
latest verdict and the report, Prometheus scraping, and now and then a run on demand (each
reads the whole window). The api that logs predictions has prediction_log's load test.

make loadtest PATTERN=monitoring SECONDS=30 USERS=10
"""

from locust import FastHttpUser, between, task

from bench.users import expect


class MonitorUser(FastHttpUser):
    wait_time = between(0.05, 0.2)

    @task(10)
    def latest(self) -> None:
        with self.client.get("/drift", catch_response=True) as resp:
            expect(resp, 200)

    @task(5)
    def scrape(self) -> None:
        with self.client.get("/metrics", catch_response=True) as resp:
            expect(resp, 200)

    @task(2)
    def report(self) -> None:
        with self.client.get("/report", catch_response=True) as resp:
            expect(resp, 200)

    @task(1)
    def run_now(self) -> None:
        with self.client.post("/drift/run", catch_response=True) as resp:
            expect(resp, 200)

"""load_test: stepped headless locust runs, an SLO gate and a capacity search
(`python -m patterns.load_test`; manifests/patterns/load_test/ runs it as a Job)."""

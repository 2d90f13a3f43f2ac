"""The step shape locust loads beside a pattern's locustfile (`shape/locustfile.py`: named
locustfile, so that the tools that import every module leave it, and its gevent patching, out)."""

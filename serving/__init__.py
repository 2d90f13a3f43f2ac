"""The shared serving library every pattern builds on.

Settings, the ONNX model contract, preprocessing, request/response schemas, the FastAPI app
factory (with the Open Inference Protocol v2 routes), metrics, JSON logs, HTTP helpers and the
uvicorn runner with graceful shutdown. No scikit-learn is imported anywhere in this package: the
serving image does not ship it.
"""

"""model_in_image: serve the model version that was baked into this image at build time.

The image (docker/model-in-image.Dockerfile) carries /models/iris-svc, checked against the
registry's sha256 during the build, and its version in the image tag and OCI labels. At start
nothing is fetched: the server verifies sha256 again, runs the golden examples and only then
turns ready; a corrupted file makes it exit non-zero. Manifest:
manifests/patterns/model_in_image/.

    python -m patterns.model_in_image.app
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("model_in_image"))

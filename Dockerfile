# vidserve's image for KubeRay: Ray's official GPU image, whose tag is the Ray version that
# k8s/ (rayVersion) and pyproject.toml (ray[serve]==...) pin; a test keeps the three equal.
#   docker build -t registry.example.com/vidserve:2.60.0-py311-gpu .
#   docker push registry.example.com/vidserve:2.60.0-py311-gpu
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /home/ray/vidserve
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users deploy ./deploy
# The app and the CUDA build of vLLM (the `gpu` extra); Ray itself is already in the image.
RUN pip install --no-cache-dir ".[gpu]"
# serve_config*.yaml are not needed at run time: KubeRay passes serveConfigV2 to Serve.

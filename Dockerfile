# fastrerank serve in a container, serving a model from a mounted folder.
#
#   docker build -t fastrerank .
#   docker run --rm -p 8000:8000 -v /path/to/converted-model:/model:ro \
#       -e FASTRERANK_API_KEY=change-me fastrerank
#
# The folder is a converted model (`fastrerank convert BAAI/bge-reranker-v2-m3 ./bge`), mounted
# read-only at /model; it is served under the name "model". Other flags go after the image name
# and replace the default command: `docker run ... fastrerank --model bge=/model --max-concurrency 8`.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Nothing is downloaded at run time: the model comes from the mounted folder.
    HF_HUB_OFFLINE=1

# Install from this source tree (only what the package build needs).
COPY pyproject.toml README.md /tmp/fastrerank/
COPY src /tmp/fastrerank/src
RUN pip install "/tmp/fastrerank[server]" && rm -rf /tmp/fastrerank

RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin fastrerank
USER 10001

EXPOSE 8000
# /health needs no key and names no path.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# SIGTERM (docker stop) finishes the requests in flight, up to --graceful-timeout seconds;
# keep docker's stop timeout longer (`docker stop -t 40`, or stop_grace_period in compose).
ENTRYPOINT ["fastrerank", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "/model"]

#!/usr/bin/env bash
# The CUDA benchmark (benchmarks/gpu.py) on a GPU machine whose Python already has torch, transformers,
# sentence-transformers, tokenizers, safetensors, huggingface_hub, numpy and scipy. Nothing is fetched:
# a ctranslate2 wheel placed in .whl/ is installed from there. Arguments go to gpu.py, except a first
# `--tests`: then the CUDA tests (tests/test_cuda.py, with pytest and pytest-timeout) and the host-copy
# timing (gpu.py --transfer) run first, their logs in $OUT. To fetch the wheel
# for a Python 3.12 machine (then send .whl along with the checkout):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl ctranslate2==4.8.5
#
#   OUT   where RESULTS-gpu.md and gpu-results.json go (default /tmp/fastrerank-gpu-out)
#
# CTranslate2 4.x wheels are built with CUDA 12 and load libcublas.so.12 at run time. On a machine
# with only CUDA 13's cuBLAS, the probe fails; the script then points libcublas.so.12 at
# libcublas.so.13 (the cuBLAS entry points CTranslate2 calls kept their names and signatures) and
# probes again, and says so in the results.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-/tmp/fastrerank-gpu-out}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
notes=""
if ! python3 benchmarks/gpu.py --probe; then
  roots="$(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [sys.prefix]))') /usr/local /usr/lib /opt"
  cublas="$(find $roots -name 'libcublas.so.13*' -not -name '*.a' 2>/dev/null | head -1)"
  [ -n "$cublas" ] || { echo "no libcublas.so.12 or .so.13 found"; exit 1; }
  dir="$(dirname "$cublas")"
  mkdir -p /tmp/cublas12
  ln -sf "$cublas" /tmp/cublas12/libcublas.so.12
  ln -sf "$(ls "$dir"/libcublasLt.so.13* | head -1)" /tmp/cublas12/libcublasLt.so.12
  export LD_LIBRARY_PATH="/tmp/cublas12:$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  python3 benchmarks/gpu.py --probe || exit 1
  notes="CTranslate2 ran with CUDA 13's cuBLAS ($cublas) loaded as libcublas.so.12: the machine has no CUDA 12 cuBLAS."
fi
tests_failed=0
if [ "${1:-}" = "--tests" ]; then
  shift
  python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/tests.log" || tests_failed=1
  python3 benchmarks/gpu.py --transfer 2>&1 | tee "$OUT/transfer.log"
fi
GPU_BENCH_NOTES="$notes" python3 benchmarks/gpu.py "$@" 2>&1 | tee "$OUT/gpu.log" || exit
[ "$tests_failed" = 0 ] || { echo "the CUDA tests failed: $OUT/tests.log"; exit 1; }

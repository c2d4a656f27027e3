#!/usr/bin/env bash
# The whole benchmark in one command: bash benchmarks/run.sh [run.py options, e.g. --quick]
#
#   FASTRERANK_PYTHON  Python with fastrerank's dependencies (default: .venv/bin/python, else python3)
#   PEERS_PYTHON       Python with the peers (default: benchmarks/.cache/peers-venv/bin/python, created
#                      when missing with torch==2.13.0 'sentence-transformers[onnx,openvino]' ...)
#   SHAPE              base (default) or large or tiny (smoke test)
#   RESULTS            where the report goes (default: benchmarks/RESULTS.md for base, RESULTS-large.md for
#                      large, under the cache for tiny); the raw calls are copied next to it
#
# Builds (once) the models under benchmarks/.cache/, measures the GEMM peak, runs every system
# interleaved (run.py), then writes benchmarks/RESULTS.md and the charts (report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPE="${SHAPE:-base}"
FASTRERANK_PYTHON="${FASTRERANK_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
PEERS_PYTHON="${PEERS_PYTHON:-benchmarks/.cache/peers-venv/bin/python}"
if [ ! -x "$PEERS_PYTHON" ]; then
  python3 -m venv benchmarks/.cache/peers-venv
  benchmarks/.cache/peers-venv/bin/pip install -q torch==2.13.0 'sentence-transformers[openvino,onnx]' \
    ctranslate2 tokenizers safetensors numpy scipy matplotlib cmeel-mimalloc
fi
ROOT="benchmarks/.cache/$SHAPE"
case "$SHAPE" in
  base) RESULTS="${RESULTS:-benchmarks/RESULTS.md}" ;;
  large) RESULTS="${RESULTS:-benchmarks/RESULTS-large.md}" ;;
  *) RESULTS="${RESULTS:-$ROOT/RESULTS.md}" ;;
esac
MIMALLOC="$("$PEERS_PYTHON" -c 'import cmeel, pathlib; print(next(pathlib.Path(cmeel.__path__[0]).parent.glob("cmeel.prefix/lib/libmimalloc.so*")))' 2>/dev/null || true)"
"$FASTRERANK_PYTHON" benchmarks/build.py --shape "$SHAPE" --peers-python "$PEERS_PYTHON"
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$PEERS_PYTHON" benchmarks/gemm_peak.py --threads 2 > "$ROOT/gemm_peak.json"
rm -f "$ROOT/results.jsonl"
"$PEERS_PYTHON" benchmarks/run.py --fastrerank-python "$FASTRERANK_PYTHON" --peers-python "$PEERS_PYTHON" \
  --root "$ROOT" ${MIMALLOC:+--mimalloc "$MIMALLOC"} "$@"
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$PEERS_PYTHON" benchmarks/gemm_peak.py --threads 2 > "$ROOT/gemm_peak_after.json"
cp "$ROOT/results.jsonl" "$(dirname "$RESULTS")/results-$SHAPE.jsonl"
"$PEERS_PYTHON" benchmarks/report.py --root "$ROOT" --results "$RESULTS" --fastrerank-python "$FASTRERANK_PYTHON" --peers-python "$PEERS_PYTHON"

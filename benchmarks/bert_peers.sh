#!/usr/bin/env bash
# The BERT MiniLM-L-6 comparison in one command: bash benchmarks/bert_peers.sh [bert_peers.py options]
#
#   FASTRERANK_PYTHON  Python with fastrerank's dependencies (default: .venv/bin/python, else python3)
#   PEERS_PYTHON       Python with the peers (default: benchmarks/.cache/bert-peers-venv/bin/python,
#                      created when missing with the pins below: the versions the recorded run used;
#                      torch==2.13.0 is the CPU wheel, a newer pin pulls a multi-GB CUDA build)
#
# Builds (once) the model, its conversions and exports under benchmarks/.cache/minilm-l6-peers/,
# then runs the four systems interleaved (~5 min on 2 cores) and writes
# benchmarks/results-bert-peers.json(l); the RESULTS.md section is written by hand from it.
set -euo pipefail
cd "$(dirname "$0")/.."
FASTRERANK_PYTHON="${FASTRERANK_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
PEERS_PYTHON="${PEERS_PYTHON:-benchmarks/.cache/bert-peers-venv/bin/python}"
if [ ! -x "$PEERS_PYTHON" ]; then
  python3 -m venv benchmarks/.cache/bert-peers-venv
  benchmarks/.cache/bert-peers-venv/bin/pip install -q torch==2.13.0 'sentence-transformers[onnx]==5.7.0' \
    transformers==4.57.6 optimum==2.1.0 optimum-onnx==0.1.0 onnxruntime==1.32.0 onnx==1.23.2 flashrank==0.2.10
fi
"$FASTRERANK_PYTHON" benchmarks/bert_peers.py --fastrerank-python "$FASTRERANK_PYTHON" --peers-python "$PEERS_PYTHON" "$@"

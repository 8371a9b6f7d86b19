#!/usr/bin/env bash
# verl's own CPU tests from the verl 0.9.1 sdist (downloaded from PyPI now), with the hyperseyes plugin on and off;
# fails when any outcome differs. Needs the venv `make test` builds. Driver and test choice:
# hyperseyes_verl/testing/verl_suite.py.
set -euo pipefail
cd "$(dirname "$0")/.."
RAY_AUTH_MODE=disabled TOKENIZERS_PARALLELISM=false .venv/bin/python -m hyperseyes_verl.testing.verl_suite "$@"

#!/usr/bin/env bash
# Brings the embedded stack up. (Submitting a real clip joins this script with the happy path.)
set -euo pipefail
cd "$(dirname "$0")/.."
reel up
reel ps

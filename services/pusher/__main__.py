"""Run the pusher: python -m services.pusher"""

from reel.service import run_stage
from services.pusher.handler import make_stage

if __name__ == "__main__":
    run_stage("pusher", make_stage)

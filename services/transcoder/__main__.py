"""Run the transcoder: python -m services.transcoder"""

from reel.service import run_stage
from services.transcoder.handler import make_stage

if __name__ == "__main__":
    run_stage("transcoder", make_stage)

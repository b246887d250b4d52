"""Run the puller: python -m services.puller"""

from reel.service import run_stage
from services.puller.handler import make_stage

if __name__ == "__main__":
    run_stage("puller", make_stage)

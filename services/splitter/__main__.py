"""Run the splitter: python -m services.splitter"""

from reel.service import run_stage
from services.splitter.handler import make_stage

if __name__ == "__main__":
    run_stage("splitter", make_stage)

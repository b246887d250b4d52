"""Run the puller: python -m services.puller"""

from reel.pipeline import PULLER
from reel.segment import media_seconds
from reel.service import run_stage
from services.puller.handler import handle

if __name__ == "__main__":
    run_stage(PULLER, handle, media_seconds=media_seconds)

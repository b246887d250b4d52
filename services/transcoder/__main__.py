"""Run the transcoder: python -m services.transcoder"""

from reel.pipeline import TRANSCODER
from reel.segment import media_seconds
from reel.service import run_stage
from services.transcoder.handler import handle

if __name__ == "__main__":
    run_stage(TRANSCODER, handle, media_seconds=media_seconds)

"""Run the pusher: python -m services.pusher"""

from reel.pipeline import PUSHER
from reel.segment import media_seconds
from reel.service import run_stage
from services.pusher.handler import handle

if __name__ == "__main__":
    run_stage(PUSHER, handle, media_seconds=media_seconds)

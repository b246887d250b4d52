"""Run the pusher: python -m services.pusher"""

from reel.service import run_skeleton

if __name__ == "__main__":
    run_skeleton("pusher")

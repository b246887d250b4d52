"""Run the transcoder: python -m services.transcoder"""

from reel.service import run_skeleton

if __name__ == "__main__":
    run_skeleton("transcoder")

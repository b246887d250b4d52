"""Run the tracker: python -m services.tracker"""

from reel.service import run_skeleton

if __name__ == "__main__":
    run_skeleton("tracker")

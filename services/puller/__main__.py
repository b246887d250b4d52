"""Run the puller: python -m services.puller"""

from reel.service import run_skeleton

if __name__ == "__main__":
    run_skeleton("puller")

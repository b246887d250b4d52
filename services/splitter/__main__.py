"""Run the splitter: python -m services.splitter"""

from reel.service import run_skeleton

if __name__ == "__main__":
    run_skeleton("splitter")

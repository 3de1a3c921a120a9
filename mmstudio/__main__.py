import multiprocessing
import sys

from mmstudio.cli import main

if __name__ == "__main__":
    # The frozen app is its own worker binary: dataset generation spawns processes that re-enter here.
    multiprocessing.freeze_support()
    sys.exit(main())

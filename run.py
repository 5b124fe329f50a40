"""Entry point: `python run.py [-j CONFIG] [-r FOLDER] ...` (see README.md)."""
import sys

from popnas_seg.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""Entry point: `python run.py [-j CONFIG] [-r FOLDER] ...` (see README.md)."""

import sys

EXIT_INTERRUPTED = 130  # as popnas_seg.cli: Ctrl-C, 128 + SIGINT

if __name__ == "__main__":
    try:  # a Ctrl-C while the imports run (the first second) is a plain "interrupted", not a traceback
        from popnas_seg.cli import main

        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)

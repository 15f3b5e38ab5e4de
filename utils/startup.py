"""Imported first by every script, before PyTorch: Ctrl-C while the libraries load (a few
seconds) exits at once with one line and status 130, as it does later (utils.cli.run),
instead of a long traceback from deep inside an import. Nothing has been written yet."""

import os
import signal
import sys


def _interrupted_at_start_up(signum, frame):
    print("interrupted", file=sys.stderr)
    os._exit(130)  # no cleanup to do: no work has started


signal.signal(signal.SIGINT, _interrupted_at_start_up)

"""What every numbered script shares: the first import, and `run(main)`.

Each script imports `run` from here before anything else, before PyTorch: importing this
module makes Ctrl-C while the libraries load (a few seconds) exit at once with one line
and status 130, as it does later, instead of a long traceback from deep inside an import,
gives a closed stderr somewhere to go, and sets how PyTorch's threads wait (below).
Library modules never import this one, nor adversarial.plumbing.cli; the scripts do.
"""

import errno
import os
import re
import signal
import sys

from adversarial.plumbing.errors import UserError

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# How PyTorch's threads wait, set before torch loads its OpenMP runtime. By default a
# thread that has finished its share of an operation spins, for up to a few milliseconds,
# until the next one starts. On a quiet machine that saves waking it up; on a machine where
# another program is busy (a browser, a second run), the spinning thread takes the core the
# one still working needs, and the attacks that run many small operations (steps 10 and
# 13) ran ten times slower. PASSIVE: a waiting thread sleeps at once. A learner's own
# setting of any of these wins (docs/how_fast.md, "A shared CPU").
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
if not any(name in os.environ for name in WAIT_SETTINGS):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _stderr_to_devnull():
    """Started with stderr closed (`2>&-`): the progress bars (tqdm) fail on a missing
    sys.stderr, and a folder run lost its whole table; and the next file opened would take
    file descriptor 2 and receive what C libraries print there. Both go to /dev/null."""
    sink = os.open(os.devnull, os.O_WRONLY)  # the lowest free descriptor
    if sink != 2:  # fd 0 or 1, closed too: it stays closed
        os.dup2(sink, 2)
        os.close(sink)
    sys.stderr = open(2, "w")  # noqa: SIM115 (open for the whole run, as stderr is)


if sys.stderr is None:
    _stderr_to_devnull()


def _interrupted_at_start_up(signum, frame):
    print("interrupted", file=sys.stderr)
    os._exit(130)  # no cleanup to do: no work has started


signal.signal(signal.SIGINT, _interrupted_at_start_up)


def run(main, argv=None):
    """Call main(argv); turn a UserError into one `error: ...` line on stderr and its exit
    code; Ctrl-C, SIGTERM and SIGHUP into one `interrupted` line (status 130), after the
    files being written are cleaned up; a closed or full stdout into one line, or a quiet
    exit when its reader is gone (`| head`). File names the terminal cannot encode are
    printed with replacements, control characters as `?`."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): the results would be lost
        _say("error: standard output is closed, so the results could not be shown")
        sys.exit(2)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    # From here these signals raise KeyboardInterrupt, so files being written are cleaned up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.default_int_handler)
    try:
        main(argv)
        sys.stdout.flush()
    except UserError as err:
        _say(f"error: {err}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout is gone: nothing more can be shown; Python would otherwise
        # fail again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EBADF):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _say(f"error: cannot write the results to standard output ({err.strerror})")
        sys.exit(1)


def _say(line):
    """One line on stderr, with control characters (a newline or an escape in a file name)
    shown as `?`."""
    print(CONTROL_CHARACTERS.sub("?", line), file=sys.stderr)

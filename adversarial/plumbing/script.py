"""What every numbered script shares: the first import, and `run(main)`.

Each script imports `run` from here before anything else, before PyTorch: importing this
module makes Ctrl-C while the libraries load (a few seconds) exit at once with one line
and status 130, as it does later, instead of a long traceback from deep inside an import.
Library modules never import this one, nor adversarial.plumbing.cli; the scripts do.
"""

import os
import signal
import sys

from adversarial.plumbing.errors import UserError


def _interrupted_at_start_up(signum, frame):
    print("interrupted", file=sys.stderr)
    os._exit(130)  # no cleanup to do: no work has started


signal.signal(signal.SIGINT, _interrupted_at_start_up)


def run(main, argv=None):
    """Call main(argv); turn a UserError into one `error: ...` line on stderr and its exit
    code, Ctrl-C into one `interrupted` line (status 130), a closed stdout (`| head`) into
    a quiet exit. File names the terminal cannot encode are printed with replacements."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    # From here Ctrl-C raises KeyboardInterrupt, so files being written are cleaned up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main(argv)
        sys.stdout.flush()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout is gone: nothing more can be shown; Python would otherwise
        # fail again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)

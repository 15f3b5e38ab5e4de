"""Wall-clock phases of a script run, for --timing."""

import contextlib
import os
import time


def seconds_since_start():
    """Wall time since this process started: interpreter start-up and imports included."""
    try:  # Linux: the process start time, in clock ticks since boot
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return float(uptime.read().split()[0]) - started
    except OSError:
        return time.process_time()  # elsewhere: CPU time so far, a fair stand-in


class Timer:
    """Named phases: `with timer("model load"): ...`, then `timer.report()`."""

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.phases = {"start-up and imports": seconds_since_start()}

    @contextlib.contextmanager
    def __call__(self, name):
        started = time.perf_counter()
        yield
        self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def report(self):
        """Print `Timing: phase 1.23 s, ...` if enabled."""
        if self.enabled:
            phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
            print(f"Timing: {phases}")

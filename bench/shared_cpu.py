"""A shared CPU: each step's common command idle and beside one busy process.

A learner's machine is rarely quiet. This runs each step's common command (the one its page
starts with, EfficientNet-Lite0 on scikit-image's coffee for the photo steps) as a whole
process, four ways, in turn, in alternating order, `--repeats` times:
- idle: as the scripts run by default (their thread wait policy, set in
  adversarial/plumbing/script.py), with the settings of `--settings` if given (e.g.
  OMP_NUM_THREADS=1);
- busy: the same, beside one busy process (`python3 -c "while True: pass"`), started just
  before the run and stopped just after;
- late: the same, the busy process started only `--late` seconds after the run (a program
  that gets busy while a step runs: a browser, a build);
- before: idle, with the settings of `--before` (default GOMP_SPINCOUNT=300000: libgomp's
  spin when no wait policy is set), to show what the policy costs on a quiet machine; not
  `--settings` (with OMP_NUM_THREADS=1 there, idle/before is one thread against two).
Prints the medians and, for busy/idle, late/idle and idle/before, the median of the ratios
within each repeat (steadier than a ratio of medians when the machine's speed drifts) and
their range; the load average before and after, which says whether "idle" was idle (it
counts the benchmark's own runs, about 1 while one runs). Variables the learner set in the
environment are passed on to every run. A run that takes more than --timeout seconds is
stopped and shown as such. Not part of the tests.

    python bench/shared_cpu.py [--repeats 2] [--steps 1,2,3,5,...,17] [--late 5]
        [--settings NAME=VALUE ...] [--before GOMP_SPINCOUNT=300000] [--busy 1]
        [--timeout 900]
"""

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import PIPE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from adversarial.plumbing.tables import print_table  # noqa: E402

LITE0 = ["--model", "efficientnet_lite0"]
BUSY = "while True: pass"


def commands(tmp):
    """Each step's common command; `tmp` holds the coffee and what steps 5 and 7 wrote."""
    coffee, five, seven = tmp / "coffee.png", tmp / "step5", tmp / "step7"
    return {
        "1": ["step_1_sample_image.py", "--output", tmp / "saved.png"],
        "2": ["step_2_pretrained.py", coffee, *LITE0],
        "3": ["step_3_adversarial.py", coffee, *LITE0, "--perturbation",
              five / "adversarial_r.npy", "--output", tmp / "step3.png"],
        "5": ["step_5_perturb.py", coffee, *LITE0, "--output-dir", tmp / "out5"],
        "6": ["step_6_defense.py", five / "adversarial.png", *LITE0, "--output", tmp / "s6.jpg"],
        "7": ["step_7_adversarial_training.py", "--output-dir", tmp / "out7"],
        "8": ["step_8_virtual_adversarial_training.py", "--output-dir", tmp / "out8"],
        "9": ["step_9_transfer.py", five / "adversarial.png"],
        "10": ["step_10_query.py", coffee, *LITE0, "--output-dir", tmp / "out10"],
        "11": ["step_11_audit.py", "--decoy", seven / "digits_standard.pth"],
        "12": ["step_12_smoothing.py", "--output-dir", tmp / "out12"],
        "13": ["step_13_minimal.py", coffee, *LITE0, "--output-dir", tmp / "out13"],
        "14": ["step_14_decision.py", coffee, "--output-dir", tmp / "out14"],
        "15": ["step_15_universal.py", "--output-dir", tmp / "out15"],
        "16": ["step_16_physical.py", coffee, "--target", "goldfish",
               "--output-dir", tmp / "out16"],
        "17": ["step_17_verify.py", "--output-dir", tmp / "out17"],
    }  # fmt: skip


def setting(text):
    """A NAME=VALUE argument."""
    name, equals, _ = text.partition("=")
    if not (name and equals):
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return text


def environment(settings=()):
    """The learner's environment, with NAME=VALUE `settings` added."""
    env = dict(os.environ)
    for pair in settings:
        name, _, value = pair.partition("=")
        env[name] = value
    return env


def timed(argv, env, busy=0, late=None, timeout=None):
    """Seconds for one whole run of argv, beside `busy` busy processes (started before the
    run, or `late` seconds into it); inf when it was stopped after `timeout` seconds."""
    spinners = []

    def spin():
        spinners.extend(subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy))

    try:
        if busy and late is None:
            spin()
            time.sleep(0.2)  # the busy ones running before the run starts
        started = time.perf_counter()
        run = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=PIPE, stderr=PIPE)
        if busy and late is not None:
            try:
                run.wait(timeout=late)
            except subprocess.TimeoutExpired:
                spin()
        try:
            _, err = run.communicate(timeout=timeout and timeout - (time.perf_counter() - started))
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
            return math.inf
        if run.returncode:
            sys.exit(f"{' '.join(argv)} failed: {err.decode(errors='replace')[-2000:]}")
        return time.perf_counter() - started
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def prepare(tmp, steps, python):
    """The coffee, and step 5's and step 7's outputs where a command reads them."""
    run = {"check": True, "capture_output": True, "cwd": ROOT}
    subprocess.run([python, "step_1_sample_image.py", "--output", tmp / "coffee.png"], **run)
    if steps & {"3", "6", "9"}:
        five = ["--output-dir", tmp / "step5"]
        subprocess.run([python, "step_5_perturb.py", tmp / "coffee.png", *LITE0, *five], **run)
    if "11" in steps:
        seven = ["--output-dir", tmp / "step7"]
        subprocess.run([python, "step_7_adversarial_training.py", *seven], **run)


def seconds(value):
    return f"{value:.2f}" if math.isfinite(value) else "stopped"


def ratio(value):
    """A ratio, or "-" where a run of the pair was stopped."""
    return f"{value:.2f}" if 0 < value < math.inf else "-"


def spread(values):
    low, high = ratio(min(values)), ratio(max(values))
    return f"{low}-{high}" if "-" not in (low, high) else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="paired runs (default 3)")
    parser.add_argument(
        "--steps", default=",".join(commands(Path())), help="which steps (default: all)"
    )
    parser.add_argument(
        "--late", type=float, default=5, help="seconds before the late busy process (default 5)"
    )
    parser.add_argument(
        "--settings",
        nargs="*",
        type=setting,
        default=[],
        metavar="NAME=VALUE",
        help="settings for the idle, busy and late runs, not before's (default: none)",
    )
    parser.add_argument(
        "--before",
        nargs="*",
        type=setting,
        default=["GOMP_SPINCOUNT=300000"],
        metavar="NAME=VALUE",
        help="the settings to compare idle runs with (default GOMP_SPINCOUNT=300000, "
        "PyTorch's OpenMP default); `--before` alone skips that column",
    )
    parser.add_argument(
        "--busy", type=int, default=1, help="busy processes beside the run (default 1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="a run stopped after it (default 900 s)"
    )
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        every = commands(tmp)
        chosen = [step.strip() for step in args.steps.split(",")]
        unknown = [step for step in chosen if step not in every]
        if unknown:
            parser.error(f"--steps: no common command for step {', '.join(unknown)}")
        prepare(tmp, set(chosen), python)
        load_before = os.getloadavg()[0]
        with_settings = environment(args.settings)
        ways = {  # way: (environment, busy processes, started how many seconds in)
            "idle": (with_settings, 0, None),
            "busy": (with_settings, args.busy, None),
            "late": (with_settings, args.busy, args.late),
        }
        if args.before:
            ways["before"] = (environment(args.before), 0, None)
        rows = []
        for step in chosen:
            argv = [python, *map(str, every[step])]
            times = {way: [] for way in ways}
            for repeat in range(args.repeats):
                order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
                for way in order:
                    env, busy, late = ways[way]
                    times[way].append(timed(argv, env, busy, late, args.timeout))
                    print(f"step {step}, {way}, run {repeat + 1}: {seconds(times[way][-1])}",
                          file=sys.stderr)  # fmt: skip
            row = [f"step {step}", seconds(statistics.median(times["idle"]))]
            for way in ("busy", "late"):
                slowdown = [b / i for b, i in zip(times[way], times["idle"], strict=True)]
                row += [seconds(statistics.median(times[way])),
                        ratio(statistics.median(slowdown)), spread(slowdown)]  # fmt: skip
            if args.before:
                cost = [i / b for i, b in zip(times["idle"], times["before"], strict=True)]
                row += [seconds(statistics.median(times["before"])),
                        ratio(statistics.median(cost)), spread(cost)]  # fmt: skip
            rows.append(row)
        load_after = os.getloadavg()[0]
    inherited = [f"{name}={value}" for name, value in os.environ.items()
                 if name.startswith(("OMP_", "GOMP_", "KMP_"))]  # fmt: skip
    print(
        f"# {os.cpu_count()} CPUs, {platform.python_version()}, {args.repeats} paired runs, "
        f"{args.busy} busy process(es), late ones after {args.late:g} s; load average "
        f"{load_before:.1f} before, {load_after:.1f} after; environment: "
        f"{' '.join(inherited) or 'nothing set'}; settings: {' '.join(args.settings) or '-'}; "
        f"before: {' '.join(args.before) or '-'}"
    )
    header = ["command", "idle s", "busy s", "busy/idle", "range", "late s", "late/idle", "range"]
    if args.before:
        header += ["before s", "idle/before", "range"]
    print_table(header, rows)


if __name__ == "__main__":
    main()

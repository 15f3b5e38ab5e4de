"""A shared CPU: each step's common command idle and beside one busy process.

A learner's machine is rarely quiet. This runs each step's common command (the one its page
starts with, EfficientNet-Lite0 on scikit-image's coffee for the photo steps) as a whole
process, three ways, in turn, in alternating order, `--repeats` times:
- idle: as the scripts run by default (their thread wait policy, set in
  adversarial/plumbing/script.py);
- busy: the same, beside one busy process (`python3 -c "while True: pass"`), started just
  before and stopped just after;
- before: idle again, with the threads waiting as PyTorch's OpenMP runtime does unless told
  otherwise (`--before`, default GOMP_SPINCOUNT=300000: libgomp's spin when no wait policy
  is set), to show what the policy costs on a quiet machine.
Prints the medians and, for busy/idle and idle/before, the median of the ratios within each
repeat (steadier than a ratio of medians when the machine's speed drifts) and their range;
the load average before and after, which says whether "idle" was idle (it counts the
benchmark's own runs, about 1 while one runs). Variables the learner set in the environment
(OMP_NUM_THREADS, OMP_WAIT_POLICY, ...) are passed on to every run. A run that takes more
than --timeout seconds is stopped and shown as such. Not part of the tests.

    python bench/shared_cpu.py [--repeats 3] [--steps 1,2,3,5,6,7,8,9,10,11,12,13]
        [--before GOMP_SPINCOUNT=300000] [--busy 1] [--timeout 900]
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
    }  # fmt: skip


def environment(before=None):
    """The learner's environment; `before`: NAME=VALUE settings added (the old default)."""
    env = dict(os.environ)
    for setting in before or ():
        name, _, value = setting.partition("=")
        env[name] = value
    return env


def timed(argv, env, busy=0, timeout=None):
    """Seconds for one whole run of argv, beside `busy` busy processes; inf when it was
    stopped after `timeout` seconds."""
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        time.sleep(0.2 if busy else 0)  # the busy ones running before the run starts
        started = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=timeout)
        return time.perf_counter() - started
    except subprocess.TimeoutExpired:
        return math.inf
    except subprocess.CalledProcessError as err:
        sys.exit(f"{' '.join(argv)} failed: {err.stderr.decode(errors='replace')[-2000:]}")
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
        "--steps", default="1,2,3,5,6,7,8,9,10,11,12,13", help="which steps (default: all)"
    )
    parser.add_argument(
        "--before",
        nargs="*",
        default=["GOMP_SPINCOUNT=300000"],
        metavar="NAME=VALUE",
        help="the settings to compare idle runs with (default GOMP_SPINCOUNT=300000, "
        "PyTorch's OpenMP default); none: skip that column",
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
        ways = {"idle": (environment(), 0), "busy": (environment(), args.busy)}
        if args.before:
            ways["before"] = (environment(args.before), 0)
        rows = []
        for step in chosen:
            argv = [python, *map(str, every[step])]
            times = {way: [] for way in ways}
            for repeat in range(args.repeats):
                order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
                for way in order:
                    env, busy = ways[way]
                    times[way].append(timed(argv, env, busy, args.timeout))
                    print(f"step {step}, {way}, run {repeat + 1}: {seconds(times[way][-1])}",
                          file=sys.stderr)  # fmt: skip
            slowdown = [b / i for b, i in zip(times["busy"], times["idle"], strict=True)]
            row = [f"step {step}", seconds(statistics.median(times["idle"])),
                   seconds(statistics.median(times["busy"])),
                   ratio(statistics.median(slowdown)), spread(slowdown)]  # fmt: skip
            if args.before:
                cost = [i / b for i, b in zip(times["idle"], times["before"], strict=True)]
                row += [seconds(statistics.median(times["before"])),
                        ratio(statistics.median(cost)), spread(cost)]  # fmt: skip
            rows.append(row)
        load_after = os.getloadavg()[0]
    settings = {name: os.environ[name] for name in os.environ if name.startswith(("OMP_", "GOMP_"))}
    print(
        f"# {os.cpu_count()} CPUs, {platform.python_version()}, {args.repeats} paired runs, "
        f"{args.busy} busy process(es); load average {load_before:.1f} before, "
        f"{load_after:.1f} after; environment: {settings or 'nothing set'}; "
        f"before: {' '.join(args.before) or '-'}"
    )
    header = ["command", "idle s", "busy s", "busy/idle", "range"]
    if args.before:
        header += ["before s", "idle/before", "range"]
    print_table(header, rows)


if __name__ == "__main__":
    main()

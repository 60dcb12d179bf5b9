"""An imported published checkpoint evaluates to exactly what the original code reports.

The reference side is written here the way mdistiller / RepDistiller evaluate CIFAR-100: the
checkpoint file read back with ``torch.load(...)["model"]``, PIL images through torchvision's
``ToTensor`` and ``Normalize`` with their mean and std, fp32, and their CIFAR ResNet's eval-mode
forward (conv-BN-ReLU stem, basic blocks with a 1x1 conv + BN projection where the shape changes,
8x8 average pool, linear), written out functionally on the state dict so that it shares no code
with ekd's model zoo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from ekdcli.jobs.build import build_model

# mdistiller's CIFAR-100 statistics (mdistiller/dataset/cifar100.py)
MDISTILLER_MEAN = (0.5071, 0.4867, 0.4408)
MDISTILLER_STD = (0.2675, 0.2565, 0.2761)


def _published_checkpoint(path: Path, images: np.ndarray) -> dict[str, torch.Tensor]:
    """A resnet8 checkpoint as mdistiller saves it, with BatchNorm statistics that are not the defaults."""
    torch.manual_seed(3)
    model = build_model("resnet8", 100, 3)
    model.train()
    with torch.no_grad():  # running statistics from real images, as training leaves them
        x = torch.from_numpy(images[:256]).permute(0, 3, 1, 2).float() / 255.0
        for _ in range(3):
            model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc.weight"] *= 30.0  # confident logits: small preprocessing differences move NLL and argmaxes
    torch.save({"model": state, "epoch": 240, "best_acc": 0.0}, path)
    return state


def _mdistiller_resnet_logits(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """mdistiller's ``models/cifar/resnet.py`` ResNet (basic blocks) in eval mode, on a state dict."""

    def conv_bn(x: torch.Tensor, conv: str, bn: str, stride: int, padding: int) -> torch.Tensor:
        y = F.conv2d(x, sd[f"{conv}.weight"], stride=stride, padding=padding)
        stats = (sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"])
        return F.batch_norm(y, *stats, training=False, eps=1e-5)

    x = F.relu(conv_bn(x, "conv1", "bn1", 1, 1))
    for stage in (1, 2, 3):
        blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith(f"layer{stage}.")})
        for i in blocks:
            p, stride = f"layer{stage}.{i}", 2 if stage > 1 and i == 0 else 1
            out = F.relu(conv_bn(x, f"{p}.conv1", f"{p}.bn1", stride, 1))
            out = conv_bn(out, f"{p}.conv2", f"{p}.bn2", 1, 1)
            if f"{p}.downsample.0.weight" in sd:
                x = conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", stride, 0)
            x = F.relu(out + x)
    pooled = F.avg_pool2d(x, 8).reshape(x.shape[0], -1)
    return F.linear(pooled, sd["fc.weight"], sd["fc.bias"])


def _reference(checkpoint: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(MDISTILLER_MEAN, MDISTILLER_STD)]
    )
    batch = torch.stack([transform(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        logits = _mdistiller_resnet_logits(state, batch).double()
    target = torch.from_numpy(labels).long()
    top5 = logits.topk(5, dim=1).indices
    return {
        "top1": (top5[:, 0] == target).double().mean().item(),
        "top5": (top5 == target[:, None]).any(dim=1).double().mean().item(),
        "nll": F.cross_entropy(logits, target).item(),
        "predictions": logits.argmax(1),
    }


def test_imported_checkpoint_gives_the_original_codes_accuracy(
    tmp_path: Path, shared_data: Path, ekd: Any
) -> None:
    data = shared_data / "tiny_cifar100.npz"
    with np.load(data) as arrays:
        train_images = arrays["x_train"]
        test_images, test_labels = arrays["x_test"], arrays["y_test"]
    _published_checkpoint(tmp_path / "ckpt_epoch_240.pth", train_images)
    where = ("--data", "cifar100", "--data-root", str(data))
    code, _, err = ekd("import", str(tmp_path / "ckpt_epoch_240.pth"), "--model", "resnet8", *where)
    assert code == 0, err
    code, out, err = ekd("evaluate", "resnet8", *where, "--json")
    assert code == 0, err
    (result,) = json.loads(out)["targets"]
    reference = _reference(tmp_path / "ckpt_epoch_240.pth", test_images, test_labels)

    assert result["n"] == len(test_labels) == 200
    assert result["precision"] == "fp32"
    # exactly the same predictions: the same count of right answers, in every class
    assert result["top1"] == reference["top1"]
    assert result["top5"] == reference["top5"]
    assert abs(result["nll"] - reference["nll"]) <= 1e-5 * reference["nll"]
    predictions = reference["predictions"].numpy()
    for cls, accuracy in enumerate(result["per_class_accuracy"]):
        members = test_labels == cls
        if members.any():
            assert accuracy == np.mean(predictions[members] == cls)
        else:
            assert accuracy is None
    # the check has teeth: these weights do not predict one class for everything
    assert len(np.unique(predictions)) > 5

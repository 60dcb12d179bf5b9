"""convmixer_tiny: exact size, the forward contract, options, and what the hook advertises."""

from __future__ import annotations

import ekd_example
import pytest
import torch
from ekd_example.convmixer import ConvMixer, convmixer_tiny

from ekdcli.sdk.errors import UsageError


def expected_params(num_classes: int, in_channels: int, dim: int, depth: int, kernel: int, patch: int) -> int:
    """Counted by hand: stem conv + BN, per block depthwise conv + BN + pointwise conv + BN, then fc."""
    stem = in_channels * dim * patch * patch + dim + 2 * dim
    block = (dim * kernel * kernel + dim) + 2 * dim + (dim * dim + dim) + 2 * dim
    return stem + depth * block + dim * num_classes + num_classes


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_the_hand_count_and_the_registered_info() -> None:
    assert count(convmixer_tiny(100)) == expected_params(100, 3, 128, 4, 5, 2) == 96228
    assert ekd_example.CONVMIXER_TINY_PARAMS_100 == 96228
    small = convmixer_tiny(7, in_channels=1, dim=16, depth=2, kernel_size=3, patch_size=4)
    assert count(small) == expected_params(7, 1, 16, 2, 3, 4)


def test_forward_returns_logits_and_features_on_request() -> None:
    torch.manual_seed(0)
    model = convmixer_tiny(10, in_channels=1, dim=16, depth=3).eval()
    x = torch.randn(4, 1, 32, 32)
    logits = model(x)
    assert logits.shape == (4, 10) and logits.dtype == torch.float32
    again, features = model(x, return_features=True)
    torch.testing.assert_close(again, logits)
    assert len(features["feats"]) == 4  # stem + 3 blocks
    assert all(f.shape == (4, 16, 16, 16) for f in features["feats"])  # patch 2: 32x32 -> 16x16 tokens
    # pooled_feat is the mean over the token grid of the last block, and the classifier reads it
    torch.testing.assert_close(features["pooled_feat"], features["feats"][-1].mean(dim=(2, 3)))
    torch.testing.assert_close(model.fc(features["pooled_feat"]), logits)
    assert features["preact_feats"] == [] and model.get_stage_channels() == [16] * 4
    # the stem's output is the first feature
    torch.testing.assert_close(features["feats"][0], model.stem_bn(model.act(model.stem(x))))


def test_the_registry_info_declares_the_features_the_model_gives() -> None:
    infos = {}
    ekd_example.register_models(lambda name, factory, **kw: infos.update({name: kw["info"]}))
    info = infos["convmixer_tiny"]
    assert info["features"] == ["feats", "pooled_feat"] and info["model_hooks"] == ["stage_channels"]
    model = convmixer_tiny(5, dim=8, depth=2).eval()
    _, features = model(torch.randn(1, 3, 8, 8), return_features=True)
    assert {k for k, v in features.items() if k == "pooled_feat" or v} == set(info["features"])
    assert not hasattr(model, "get_bn_before_relu")


def test_the_residual_block_mixes_space_and_channels_as_written() -> None:
    torch.manual_seed(1)
    block = ConvMixer(2, 3, dim=8, depth=1, kernel_size=5, patch_size=2).blocks[0].eval()
    x = torch.randn(2, 8, 6, 6)
    gelu = torch.nn.functional.gelu
    y = x + block.bn1(gelu(block.depthwise(x)))
    torch.testing.assert_close(block(x), block.bn2(gelu(block.pointwise(y))))
    assert block.depthwise.groups == 8 and block.depthwise(x).shape == x.shape  # "same" padding


def test_it_trains_a_step_and_the_loss_goes_down() -> None:
    torch.manual_seed(0)
    model = convmixer_tiny(3, in_channels=1, dim=8, depth=1)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 3, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_options_are_usage_errors_naming_the_option() -> None:
    with pytest.raises(UsageError, match="does not take option\\(s\\) width; it accepts dim, depth"):
        convmixer_tiny(10, width=3)
    with pytest.raises(UsageError, match="option 'dim' of model 'convmixer_tiny' must be at least 1"):
        convmixer_tiny(10, dim=0)
    with pytest.raises(UsageError, match="option 'depth' of model 'convmixer_tiny' must be an integer"):
        convmixer_tiny(10, depth=1.5)

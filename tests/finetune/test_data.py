"""The fine-tune input pipeline: seeded order and augmentation, sharding, and the bad-image policy."""

from __future__ import annotations

import pytest
import torch

from headstart.backbones.types import Preprocessing
from headstart.data.dataset import build_dataset
from headstart.data.types import SplitConfig
from headstart.errors import DataError
from headstart.finetune.config import AugmentConfig
from headstart.finetune.data import EpochSampler, SplitImages, make_loader, raise_bad_images


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(20, seed=3, shuffle=True), EpochSampler(20, seed=3, shuffle=True)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert [i for i, _ in a] != [i for i, _ in b]
    assert sorted(i for i, _ in a) == list(range(20))
    assert list(EpochSampler(4, seed=3, shuffle=False)) == [(0, -1), (1, -1), (2, -1), (3, -1)]


def test_sampler_shards_cover_every_index_like_distributed_sampler():
    shards = [list(EpochSampler(10, seed=0, shuffle=True, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # padded to equal length
    assert {i for s in shards for i, _ in s} == set(range(10))
    tiny = [list(EpochSampler(2, seed=0, shuffle=True, num_replicas=5, rank=r)) for r in range(5)]
    assert all(len(s) == 1 for s in tiny)  # more ranks than samples still works


def test_train_items_are_augmented_by_their_seed_alone(phantom_dir):
    """The sampler's per-item seed alone decides the view (headstart.data.augment), so workers agree."""
    ds = build_dataset(phantom_dir, split_config=SplitConfig())
    train = [s for s in ds.samples if s.split == "train"][:2]
    prep = Preprocessing(input_size=32, resize_size=36)
    images = SplitImages(ds.source, train, prep, augment=AugmentConfig(preset="light"))
    again = SplitImages(ds.source, train, prep, augment=AugmentConfig(preset="light"))
    assert torch.equal(images[(0, 5)][0], again[(0, 5)][0])
    assert not torch.equal(images[(0, 5)][0], images[(0, 6)][0])
    assert images[(0, 5)][0].shape == (3, 32, 32)


def test_an_unknown_preset_is_refused_in_one_line():
    from headstart.errors import ConfigError
    from headstart.finetune.config import FinetuneConfig

    with pytest.raises(ConfigError, match="--augment-preset 'flip'.*light"):
        FinetuneConfig(augment=AugmentConfig(preset="flip")).validate()


def test_val_items_are_never_augmented(phantom_dir):
    ds = build_dataset(phantom_dir, split_config=SplitConfig())
    val = [s for s in ds.samples if s.split == "val"]
    prep = Preprocessing(input_size=32, resize_size=36)
    plain = SplitImages(ds.source, val, prep)
    augmented = SplitImages(ds.source, val, prep, augment=AugmentConfig())
    # The val loader asks with seed -1 (no shuffle), so even an augmenting dataset returns the eval crop.
    loader = make_loader(augmented, EpochSampler(len(val), seed=0, shuffle=False), batch_size=4, workers=0,
                         pin_memory=False)
    images, labels, positions, errors = next(iter(loader))
    assert torch.equal(images[0], plain[(0, -1)][0])
    assert not torch.equal(augmented[(0, 123)][0], plain[(0, -1)][0])
    assert list(errors) == [""] * 4


def test_bad_image_comes_back_flagged_and_fails_naming_the_file(phantom_dir, tmp_path):
    ds = build_dataset(phantom_dir, split_config=SplitConfig())
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"not a jpeg")
    sample = ds.samples[0].__class__(id="broken.jpeg", label=0, split="train", path=str(bad))
    image, _, _, error = SplitImages(ds.source, [sample], Preprocessing(input_size=32, resize_size=36))[(0, -1)]
    assert image.shape == (3, 32, 32) and "broken.jpeg" in error
    with pytest.raises(DataError, match="broken.jpeg") as info:
        raise_bad_images(["", error])
    assert "\n" not in str(info.value)

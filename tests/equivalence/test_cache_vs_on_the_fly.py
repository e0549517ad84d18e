"""The cache changes the speed, not the result: `finetune --freeze backbone` on the fly vs heads on extracted features.

The default recipes of the two paths differ on purpose (a cached `LinearHead` standardises its inputs and stops on
val loss; the fine-tune head sees raw features under a warmup + cosine AdamW schedule and keeps the best val-AUROC
epoch), so comparing their default AUROCs would test the recipes, not the cache. The proof is split in three:

1. Same inputs: the frozen backbone inside a `--freeze backbone` fine-tune computes, image for image, the features
   that `headstart extract` stored (same backbone, random-weight seed, image size and splits). The cache is
   float16, whose rounding error is at most 2**-11 relative, so features agree to rtol 2e-3 (plus a tiny atol for
   values near zero), not exactly.
2. Same head, trained the same way: the fine-tune's own head recipe (its init, AdamW groups, schedule, sampler
   order, class-weighted loss and best-epoch rule, all reused from `headstart.finetune`) applied to the *cached*
   features reproduces the on-the-fly run: test probabilities within 1e-3 and the same test AUROC within 0.02.
   What remains is only float16 rounding propagated through a few epochs of training.
3. The cached `linear` head (`LinearHead`) trained on the cached features and on the fine-tune's on-the-fly
   features reaches the same test AUROC within 0.02 (float16 rounding again; with 20 test images one flipped
   pair is 1/(4 * 16) ~ 0.016 of AUROC, hence 0.02 rather than 0.

The cache above is computed by the default CPU engine, onnxruntime; the engine case checks it against the torch
engine's cache (cosine >= 0.99999 per row), and the provider cases repeat proof 1 for a timm model and for a
one-channel torchxrayvision model (its grayscale input path in both extraction and fine-tuning).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from headstart.backbones.registry import create_model
from headstart.cache.reader import FeatureCache
from headstart.data.dataset import build_dataset
from headstart.data.types import SplitConfig
from headstart.evaluation.metrics import compute_metrics
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract
from headstart.finetune.config import AugmentConfig, FinetuneConfig
from headstart.finetune.data import EpochSampler, SplitImages, make_loader
from headstart.finetune.freeze import apply_freeze
from headstart.data.balance import class_weights
from headstart.finetune.train import StepContext, TrainState, make_optimization, run_finetune
from headstart.heads.torch_heads import LinearHead

BACKBONE, SIZE, SEED = "resnet18", 32, 0
CONFIG = FinetuneConfig(backbone=BACKBONE, weights="random", image_size=SIZE, seed=SEED, freeze="backbone",
                        augment=AugmentConfig.none(), epochs=4, lr=0.05, batch_size=16, patience=0, workers=0,
                        device="cpu", n_boot=10, select_metric="loss")  # val loss keeps improving: a late epoch wins


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """One phantom set and its cache, extracted with the defaults (on this CPU: the onnxruntime engine)."""
    from headstart.data.synthetic import make_phantom_dataset

    tmp = tmp_path_factory.mktemp("equivalence")
    data = make_phantom_dataset(tmp / "cxr", n_train=64, n_test=20, image_size=40, seed=3)
    cache = tmp / "cache.h5"
    run_extract(data=str(data), output=str(cache), config=ExtractConfig(
        backbones=[BACKBONE], weights="random", image_size=SIZE, seed=SEED, device="cpu", workers=0,
        split=SplitConfig(seed=SEED)))
    return data, cache


@pytest.fixture(scope="module")
def both_paths(extracted, tmp_path_factory):
    """The phantom set, extracted once into a cache and fine-tuned once with a frozen backbone."""
    data, cache = extracted
    tmp = tmp_path_factory.mktemp("equivalence-finetune")
    record = run_finetune(data=str(data), runs_dir=str(tmp / "runs"), config=CONFIG,
                          split_config=SplitConfig(seed=SEED))
    dataset = build_dataset(data, split_config=SplitConfig(seed=SEED))
    by_split = {split: [s for s in dataset.samples if s.split == split] for split in ("train", "val", "test")}
    with FeatureCache(cache) as c:
        X, valid = c.load(BACKBONE)
        row = {str(i): k for k, i in enumerate(c.ids)}
        cached_split = {str(i): str(s) for i, s in zip(c.ids, c.splits)}
    assert valid.all()
    assert all(cached_split[s.id] == split for split, samples in by_split.items() for s in samples)
    cached = {split: X[[row[s.id] for s in samples]] for split, samples in by_split.items()}
    return dataset, by_split, cached, record


def _on_the_fly_features(dataset, samples, backbone: str = BACKBONE, size: int | None = SIZE) -> np.ndarray:
    """What the fine-tune's frozen backbone computes: its model, data pipeline, normalisation and memory layout."""
    net, prep, _ = create_model(backbone, num_classes=2, weights="random", image_size=size, seed=SEED)
    net = net.to(memory_format=torch.channels_last).eval()
    ctx = StepContext(device=torch.device("cpu"), prep=prep, amp_dtype=None, progress=False)
    loader = make_loader(SplitImages(dataset.source, samples, prep), EpochSampler(len(samples), seed=SEED, shuffle=False),
                         batch_size=CONFIG.batch_size, workers=0, pin_memory=False)
    with torch.inference_mode():
        return torch.cat([net.backbone(ctx.inputs(images, labels)[0]) for images, labels, _, _ in loader]).numpy()


def test_frozen_backbone_features_equal_the_cached_features(both_paths):
    dataset, by_split, cached, _ = both_paths
    for split, samples in by_split.items():
        fly = _on_the_fly_features(dataset, samples)
        assert fly.shape == cached[split].shape and np.abs(fly).max() > 0
        np.testing.assert_allclose(cached[split], fly, rtol=2e-3, atol=1e-4 * np.abs(fly).max(), err_msg=split)


def _finetune_recipe_on_features(by_split, features) -> np.ndarray:
    """The `--freeze backbone` fine-tune's head training, fed with feature rows instead of images.

    Everything but the loop is the fine-tune's own code: model and head init, freeze, optimiser groups, warmup +
    cosine schedule, the epoch sampler's order, the drop-last rule, the class-weighted loss and best-epoch rule.
    """
    torch.manual_seed(CONFIG.seed)
    net, prep, _ = create_model(BACKBONE, num_classes=2, weights="random", image_size=SIZE, seed=SEED)
    apply_freeze(net, name=BACKBONE, mode="backbone")
    ctx = StepContext(device=torch.device("cpu"), prep=prep, amp_dtype=None, progress=False)
    n_train, bs = len(by_split["train"]), CONFIG.batch_size
    steps = n_train // bs if n_train % bs == 1 else -(-n_train // bs)
    optimizer, scheduler, _ = make_optimization(net, config=CONFIG, steps_per_epoch=steps, ctx=ctx)
    weight = class_weights([s.label for s in by_split["train"]], 2, CONFIG.class_weight)  # as the fine-tune weighs
    criterion = nn.CrossEntropyLoss(weight=torch.from_numpy(weight))
    x = {split: torch.from_numpy(features[split]) for split in features}
    y = {split: torch.tensor([s.label for s in samples]) for split, samples in by_split.items()}
    sampler = EpochSampler(n_train, seed=CONFIG.seed, shuffle=True)
    state, best_head = TrainState(), None
    for epoch in range(CONFIG.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor([position for position, _ in sampler])
        for step in range(steps):
            rows = order[step * bs:(step + 1) * bs]
            loss = criterion(net.head(x["train"][rows]), y["train"][rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        with torch.no_grad():
            val_loss = float(criterion(net.head(x["val"]), y["val"]))  # the class-weighted mean, as evaluate_split
        if state.update(epoch, -val_loss):
            best_head = copy.deepcopy(net.head)
    with torch.no_grad():
        return torch.softmax(best_head(x["test"]), dim=1).numpy().astype(np.float64)


def test_the_same_head_recipe_on_cached_features_reproduces_the_frozen_finetune(both_paths):
    _, by_split, cached, record = both_paths
    on_the_fly = np.asarray(record.predictions["test"]["proba"])
    from_cache = _finetune_recipe_on_features(by_split, cached)
    y_test = np.array([s.label for s in by_split["test"]])
    assert record.config["best_epoch"] > 1  # the comparison covers several epochs of training, not just one
    np.testing.assert_allclose(from_cache, on_the_fly, atol=1e-3)
    cache_auroc = compute_metrics(y_test, from_cache)["auroc"]
    assert cache_auroc == pytest.approx(record.metrics["test"]["auroc"], abs=0.02)


def test_cached_linear_head_reaches_the_same_auroc_as_on_on_the_fly_features(both_paths):
    dataset, by_split, cached, _ = both_paths
    fly = {split: _on_the_fly_features(dataset, samples) for split, samples in by_split.items()}
    y = {split: np.array([s.label for s in samples]) for split, samples in by_split.items()}
    aurocs = []
    for features in (cached, fly):
        head = LinearHead(lr=1e-2, epochs=20, class_weight="balanced", seed=SEED)
        head.fit(features["train"], y["train"], X_val=features["val"], y_val=y["val"])
        aurocs.append(compute_metrics(y["test"], head.predict_proba(features["test"]))["auroc"])
    assert aurocs[0] > 0.6  # the head learns something, so agreement is not two coin flips agreeing
    assert aurocs[0] == pytest.approx(aurocs[1], abs=0.02)


def test_the_onnxruntime_engine_gives_the_torch_engines_features(extracted, tmp_path):
    """The default CPU engine (onnxruntime, which made the shared cache) against `--engine torch`: equal within
    float16 storage precision, cosine >= 0.99999 on every row."""
    data, default = extracted
    cache = tmp_path / "torch.h5"
    run_extract(data=str(data), output=str(cache), config=ExtractConfig(
        backbones=[BACKBONE], weights="random", image_size=SIZE, seed=SEED, device="cpu", workers=0, engine="torch",
        split=SplitConfig(seed=SEED)))
    with FeatureCache(default) as a, FeatureCache(cache) as b:
        assert (a.feature_sets[BACKBONE]["engine"], b.feature_sets[BACKBONE]["engine"]) == ("onnxruntime", "torch")
        x, _ = a.load(BACKBONE)
        y, _ = b.load(BACKBONE)
    x, y = x.astype(np.float64), y.astype(np.float64)
    cosine = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert cosine.min() >= 0.99999
    np.testing.assert_allclose(x, y, rtol=2e-3, atol=1e-4 * np.abs(y).max())


@pytest.mark.parametrize("backbone,size", [("timm:resnet18", SIZE), ("xrv:densenet121-res224-all", None)])
def test_provider_features_in_the_cache_equal_the_frozen_finetune_backbones(backbone, size, tmp_path):
    from headstart.data.synthetic import make_phantom_dataset

    pytest.importorskip({"timm": "timm", "xrv": "torchxrayvision"}[backbone.split(":")[0]])
    data = make_phantom_dataset(tmp_path / "cxr", n_train=8, n_test=4, val=4, image_size=40, seed=5)
    cache = tmp_path / "c.h5"
    run_extract(data=str(data), output=str(cache), config=ExtractConfig(
        backbones=[backbone], weights="random", image_size=size, seed=SEED, device="cpu", workers=0, engine="torch",
        split=SplitConfig(seed=SEED)))
    dataset = build_dataset(data, split_config=SplitConfig(seed=SEED))
    with FeatureCache(cache) as c:
        X, _ = c.load(backbone)
        row = {str(i): k for k, i in enumerate(c.ids)}
    cached = X[[row[s.id] for s in dataset.samples]]
    fly = _on_the_fly_features(dataset, dataset.samples, backbone, size)
    assert fly.shape == cached.shape and np.abs(fly).max() > 0
    np.testing.assert_allclose(cached, fly, rtol=2e-3, atol=1e-4 * np.abs(fly).max())

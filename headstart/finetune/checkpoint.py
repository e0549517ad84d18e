"""Fine-tune checkpoints: one dict per file, written atomically, loaded with `weights_only=True`.

The dict holds only tensors and JSON-like values (the numpy RNG state is stored as a list), so the safe
unpickler can read it. Each checkpoint carries the fingerprint it was made for: the data set's manifest hash
and every config key except where the run executes; `--resume` refuses a checkpoint whose fingerprint differs
and names the keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from headstart.io import replace_durably
from headstart.errors import CheckpointError, ConfigError
from headstart.finetune.config import RESUME_FREE_KEYS, FinetuneConfig

CHECKPOINT_VERSION = 1  # bump when the dict's layout changes, so old files are refused with a clear message


def make_fingerprint(config: FinetuneConfig, *, manifest_hash: str, weights_sha256: str, world_size: int = 1) -> dict:
    """What a checkpoint was computed from, kept readable (not hashed) so a mismatch can name its keys.

    The number of torchrun ranks is part of it: it sets the global batch, the shards and the steps per epoch
    (hence the learning-rate schedule), so a run resumes only with the world size it was started with.
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE_KEYS}
    settings["world_size"] = world_size
    return {"config": settings, "manifest_hash": manifest_hash, "weights_sha256": weights_sha256}


def fingerprint_differences(stored: dict, expected: dict) -> list[str]:
    """Names of the fingerprint entries that differ, e.g. ['lr', 'data (manifest hash)']."""
    names = []
    stored_cfg, expected_cfg = stored.get("config", {}), expected.get("config", {})
    for key in sorted(set(stored_cfg) | set(expected_cfg)):
        if _normalise(stored_cfg.get(key)) != _normalise(expected_cfg.get(key)):
            names.append(f"{key} ({stored_cfg.get(key)!r} in the checkpoint, {expected_cfg.get(key)!r} now)")
    if stored.get("manifest_hash") != expected.get("manifest_hash"):
        names.append("data (the images, labels or splits differ)")
    if stored.get("weights_sha256") != expected.get("weights_sha256"):
        names.append("weights file contents")
    return names


def _normalise(value):
    """Tuples and lists compare equal (a config round-trips through the checkpoint as either)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def capture_rng_state() -> dict:
    """Every RNG a training step may touch, in a form `weights_only` loading accepts."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block that seeds and draws from the process's RNGs, then put every one back as it was.

    A fine-tune must use the global generators: dropout draws from torch's, and a checkpoint captures them all
    so that a resumed run continues the same streams. Restoring them afterwards (also on error) leaves the
    caller's random streams as they were, as `torch.random.fork_rng` does for torch alone.
    """
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


def content_digest(obj) -> str:
    """sha256 over every tensor's bytes and every other leaf, in key order.

    torch.load checks no checksum of tensor data, so a flipped bit inside a weight would load silently (the
    reliability suite measured it); the digest, stored in the checkpoint and checked on load, catches it.
    """
    h = hashlib.sha256()

    def walk(x) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no bytes copy
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(f"K{k!r}".encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}".encode())
            for v in x:
                walk(v)
        else:
            h.update(f"V{x!r}".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(path: str | Path, checkpoint: dict) -> None:
    """Write to a temporary name, fsync, rename: a crash leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = {"checkpoint_version": CHECKPOINT_VERSION, **checkpoint}
    try:
        torch.save({**payload, "digest": content_digest(payload)}, tmp)
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_copy(src: str | Path, dst: str | Path) -> None:
    """Atomically make `dst` a copy of the checkpoint `src`: a hard link where the file system allows (no
    bytes written; a later save replaces `src` with a new file, leaving `dst` intact), else a full copy."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        replace_durably(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, *, expected_fingerprint: dict | None = None) -> dict:
    """Load a checkpoint safely; refuse unreadable files and ones made for another configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {path.parent}; run without --resume")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, disk error: all mean the file is unusable
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); delete it and run without --resume"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not a headstart fine-tune checkpoint (version {CHECKPOINT_VERSION}); "
            "delete it and run without --resume"
        )
    digest = checkpoint.pop("digest", None)
    if digest != content_digest(checkpoint):
        raise CheckpointError(
            f"checkpoint {path} is damaged (its content checksum does not match); delete it and run without --resume"
        )
    if expected_fingerprint is not None:
        differences = fingerprint_differences(checkpoint.get("fingerprint", {}), expected_fingerprint)
        if differences:
            raise ConfigError(
                f"checkpoint {path} was made for another configuration: {'; '.join(differences)}; "
                "rerun with the original options, or without --resume (or with another -o) to start afresh"
            )
    return checkpoint

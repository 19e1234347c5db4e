"""Ray Data pipeline: Parquet shards -> decoded, augmented clips, streamed to Ray Train workers.

    ds = build_dataset("shards/train", "train", ClipSpec(), AugmentSpec())
    trainer = TorchTrainer(loop, datasets={"train": ds}, ...)
    # in the loop: for batch in ray.train.get_dataset_shard("train").iter_torch_batches(batch_size=8): ...

Execution is streaming: shards are read, decoded and handed to trainers in small blocks, so memory
stays bounded as the dataset grows (nothing is materialised). Training order changes every epoch:
the shard files are shuffled per epoch (`vfn data shard` already mixed the classes across
shards), and rows are globally shuffled too while the encoded dataset is small
(`full_shuffle_max_bytes`; Ray's all-to-all shuffle is a barrier that costs more than it brings
on real datasets). For row-level mixing on large data pass `local_shuffle_buffer_size` to
`iter_torch_batches`. Augmentation randomness also changes per epoch; with
a `seed` it is reproducible per (seed, epoch, video) as far as Ray's execution index allows.

With `augment_on_device` (`augment.on_device`, on by default when the training workers have GPUs)
the decode tasks stop short of augmenting: each training row is a fixed-size window that holds the
clip's crop box plus the parameters drawn for it (`clips.decode_train_window`), and the training
step crops, flips and colours the batch on its device (`device_augment.DeviceAugment`). The rows are
~1.7x larger (256 x 342 vs 224 x 224 pixels); the decode task saves the augmentation's CPU time.

A video that fails to decode here yields `valid=False` and an all-zero clip of the right shape,
so one bad file never kills a long run: the consumer skips and counts it and calls
`check_corrupt_budget` to stop once corrupt videos exceed the allowed share.

Imports: this module and what it imports at the top stay free of torch. Ray's coordinator
processes (Train's controller, its DatasetManager, each dataset's SplitCoordinator) unpickle the
task functions below, importing this module, and torch would cost ~2 s of CPU in each. The decode
tasks name the decoders in `clips` (torch) for their guard's child to import: a decode task's own
process stays free of torch too (~470 MB and ~2 s of CPU less per process); only an unguarded
decode (`decode_timeout_s=0`) imports them in the task.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import numpy as np

from vfn.data.guard import guard_for
from vfn.data.ledger import report_corrupt
from vfn.data.shards import list_shards, read_metadata
from vfn.data.video import (
    AugmentParams,
    AugmentSpec,
    ClipSpec,
    CorruptVideoError,
    train_window_shape,
)
from vfn.runtime.storage import filesystem_and_path, is_arrow_native

log = logging.getLogger(__name__)

CLIPS = "vfn.data.clips"  # the decoders (torch), named so that only the guard's child imports them
DEFAULT_DECODE_TIMEOUT_S = 60.0  # one clip decodes in well under a second; only a stuck decoder takes this long


class TooManyCorruptVideos(RuntimeError):
    """More videos failed to decode than the configured share allows."""


def check_corrupt_budget(corrupt: int, seen: int, max_share: float) -> None:
    """Raise TooManyCorruptVideos if corrupt/seen exceeds max_share (a fraction in [0, 1])."""
    if seen > 0 and corrupt / seen > max_share:
        raise TooManyCorruptVideos(
            f"{corrupt} of {seen} videos ({corrupt / seen:.1%}) could not be decoded, more than the allowed "
            f"{max_share:.1%}; find them with `vfn data shard --full-probe` (rejected.csv) or raise the limit")


def drop_invalid(batch: dict) -> tuple[dict, int]:
    """Remove rows with valid=False from a batch (numpy or torch); returns (batch, number dropped)."""
    valid = batch["valid"]
    n_bad = int(len(valid) - valid.sum())
    if n_bad == 0:
        return batch, 0
    return {k: v[valid] for k, v in batch.items()}, n_bad


def _execution_index() -> int:
    """Ray Data's per-execution counter (one execution per epoch); 0 if this Ray lacks it."""
    try:
        from ray.data import DataContext  # LAZY: ray.data in the driver only: task processes unpickle this module

        return int(getattr(DataContext.get_current(), "_execution_idx", 0) or 0)
    except Exception:
        return 0


def _video_rngs(batch: dict, seed: int | None) -> list[np.random.Generator]:
    """One generator per video: reproducible per (seed, epoch, video) with a seed, fresh otherwise
    (never one shared by the batch: the decode guard's child advances a copy)."""
    if seed is None:
        return [np.random.default_rng() for _ in range(len(batch["label"]))]
    epoch = _execution_index()
    return [np.random.default_rng([seed, epoch, int(i)]) for i in batch["index"]]


def decode_train_batch(batch: dict, clip: ClipSpec, aug: AugmentSpec | None, seed: int | None,
                       num_threads: int, on_device: bool = False, timeout_s: float = 0.0, ledger=None) -> dict:
    """The training split's Ray Data map function: shard rows (`video` bytes, `label`, `index`,
    `path`) -> decoded rows (see `build_dataset`), each video under the decode guard."""
    n = len(batch["label"])
    windowed = on_device and aug is not None  # the device augments: ship windows and drawn parameters
    if windowed:  # channels last, as decoded (`clips.slice_window`)
        shape = train_window_shape(clip, aug)
        videos = np.zeros((n, clip.num_frames, *shape, 3), np.uint8)
        # a corrupt video's row keeps a whole-window box, so the device's resize never divides by zero
        params = np.tile(AugmentParams((0.0, 0.0, *shape)).to_vector(), (n, 1))
    else:
        videos = np.zeros((n, clip.num_frames, 3, clip.input_size, clip.input_size), np.uint8)
    valid = np.ones(n, bool)
    guard = guard_for(timeout_s)
    for i, rng in enumerate(_video_rngs(batch, seed)):
        try:
            if windowed:
                videos[i], params[i] = guard.call(f"{CLIPS}:decode_train_window", batch["video"][i], clip, aug,
                                                  rng, num_threads)
            else:
                videos[i] = guard.call(f"{CLIPS}:decode_train_clip", batch["video"][i], clip, aug, rng, num_threads)
        except CorruptVideoError as e:  # includes a decode cut off by the guard's limit
            valid[i] = False
            log.warning("skipping corrupt video %s: %s", batch["path"][i], e)
            report_corrupt(ledger, "train", batch["path"][i], e)
    out = {"video": videos, "label": batch["label"].astype(np.int64), "valid": valid}
    return {**out, "aug_params": params} if windowed else out


def decode_val_batch(batch: dict, clip: ClipSpec, index_map: np.ndarray | None, num_threads: int,
                     timeout_s: float = 0.0, ledger=None) -> dict:
    """The validation split's map function: every test view of each video, under the decode guard."""
    n = len(batch["label"])
    videos = np.zeros((n, clip.num_views, clip.num_frames, 3, clip.input_size, clip.input_size), np.uint8)
    valid = np.ones(n, bool)
    guard = guard_for(timeout_s)
    for i in range(n):
        try:
            videos[i] = guard.call(f"{CLIPS}:decode_test_views", batch["video"][i], clip, num_threads)
        except CorruptVideoError as e:
            valid[i] = False
            log.warning("skipping corrupt video %s: %s", batch["path"][i], e)
            report_corrupt(ledger, "val", batch["path"][i], e)
    index = batch["index"].astype(np.int64)
    if index_map is not None:  # manifest positions with gaps (rejected videos) -> dense 0..N-1
        index = np.searchsorted(index_map, index).astype(np.int64)
    return {"video": videos, "label": batch["label"].astype(np.int64), "index": index, "valid": valid}


def _total_bytes(files: list[str]) -> int:
    total = 0
    for f in files:
        fs, p = filesystem_and_path(f)
        total += fs.get_file_info(p).size or 0
    return total


def build_dataset(shards: str | list[str], split: Literal["train", "val"], clip: ClipSpec,
                  aug: AugmentSpec | None = None, *, seed: int | None = None,
                  shuffle: Literal["auto", "full", "files", "none"] = "auto",
                  full_shuffle_max_bytes: int = 64 << 20, decode_batch_size: int = 4,
                  num_cpus: float = 1.0, concurrency: int | tuple[int, int] | None = None,
                  num_threads: int = 1, block_bytes: int = 16 << 20, augment_on_device: bool = False,
                  decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S, corrupt_ledger=None):
    """A streaming `ray.data.Dataset` of decoded clips from Parquet shards.

    train rows: video uint8 (T, 3, S, S), label int64, valid bool
                with `augment_on_device` (and an `aug`): video uint8 (T, H, W, 3) windows that hold
                the crop box ((H, W) = `video.train_window_shape`) and aug_params float32 (PARAMS_SIZE,),
                for `device_augment.DeviceAugment` on the training device
    val rows:   video uint8 (V, T, 3, S, S), label int64, index int64 (dense 0..N-1), valid bool
    `num_cpus` is reserved per decode task: on a small machine where Train workers hold CPUs,
    lower it (or give workers fractional CPUs) so decoding can still be scheduled.
    `block_bytes` caps Ray Data blocks for this dataset (Ray's default, 128 MiB, is ~100 decoded
    224px clips held per task, which multiplies worker memory).
    `decode_timeout_s`: each video decodes in a guarded child process (`guard.DecodeGuard`) and a
    decode over this limit counts as corrupt; 0 decodes in the task itself, unguarded.
    `corrupt_ledger`: a `ledger.CorruptLedger` that hears of every video skipped as corrupt.
    """
    from ray.data import DataContext  # LAZY: ray.data in the driver only: task processes unpickle this module

    ctx = DataContext.get_current()
    saved = ctx.target_max_block_size
    ctx.target_max_block_size = block_bytes  # a Dataset keeps the context it was created under
    try:
        decode = dict(clip=clip, num_threads=num_threads, timeout_s=decode_timeout_s, ledger=corrupt_ledger)
        return _build(shards, split, decode, aug, seed, shuffle, full_shuffle_max_bytes, decode_batch_size,
                      num_cpus, concurrency, augment_on_device)
    finally:
        ctx.target_max_block_size = saved


FOOTER_READERS_ENV = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
FILES_PER_FOOTER_READER = 1000


def footer_readers(num_files: int) -> int:
    """FooterReader actors for listing `num_files` shards: 1 per 1000 files, at most 8."""
    return max(1, min(8, num_files // FILES_PER_FOOTER_READER))


def _read_parquet(files: list[str], **read_args):
    """`ray.data.read_parquet` with a footer-reader pool sized to the shards.

    Ray Data's Parquet reader lists files on a pool of FooterReader actors, 32 by default, created
    anew for every execution, so for every epoch of every dataset: each a Python process importing
    Ray and pyarrow (~1.5 s of CPU). Shards are few and large, and one actor reads footers with 128
    concurrent requests, so the pool is cut to `footer_readers`; a tiny two-epoch `vfn train` on 2
    cores ran 17% faster (49 vs 59 s, 19 vs 28 worker processes). The pool size is only read from
    the environment when the reader is built (here), so it is set around that call; a value the
    user exported wins.
    """
    import ray.data  # LAZY: ray.data in the driver only: task processes unpickle this module

    if FOOTER_READERS_ENV in os.environ:
        return ray.data.read_parquet(files, **read_args)
    os.environ[FOOTER_READERS_ENV] = str(footer_readers(len(files)))
    try:
        return ray.data.read_parquet(files, **read_args)
    finally:
        del os.environ[FOOTER_READERS_ENV]


def _build(shards, split, decode: dict, aug, seed, shuffle, full_shuffle_max_bytes, decode_batch_size, num_cpus,
           concurrency, augment_on_device):
    from ray.data import FileShuffleConfig  # LAZY: ray.data in the driver only: task processes unpickle this module

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    uris = list_shards(shards)
    files, read_args = uris, {"columns": ["index", "path", "label", "video"]}
    if not is_arrow_native(uris[0]):  # an fsspec-only protocol: hand Ray the filesystem object
        read_args["filesystem"] = filesystem_and_path(uris[0])[0]
        files = [filesystem_and_path(u)[1] for u in uris]
    # no per-task runtime_env here: Ray runs such tasks in dedicated worker processes, started anew
    # for every epoch's execution (importing torch and decord: ~8 s of a 10 s epoch on tiny data);
    # the malloc setting it used to carry is job-wide now (`ray_setup.init_ray`)
    map_args = dict(batch_size=decode_batch_size, batch_format="numpy", num_cpus=num_cpus,
                    concurrency=concurrency, zero_copy_batch=True, udf_modifying_row_count=False)
    if split == "val":
        ds = _read_parquet(files, **read_args)
        indices = np.sort(read_metadata(uris, ["index"]).column("index").to_numpy())
        index_map = None if np.array_equal(indices, np.arange(len(indices))) else indices
        return ds.map_batches(decode_val_batch, fn_kwargs=dict(index_map=index_map, **decode), **map_args)
    if shuffle == "auto":
        shuffle = "full" if _total_bytes(uris) <= full_shuffle_max_bytes else "files"
    file_shuffle = None
    if shuffle in ("full", "files"):
        file_shuffle = FileShuffleConfig(seed=seed) if seed is not None else "files"
    ds = _read_parquet(files, shuffle=file_shuffle, **read_args)
    if shuffle == "full":
        from ray.data import RandomSeedConfig  # LAZY: ray.data in the driver only: task processes unpickle this module

        ds = ds.random_shuffle(seed=RandomSeedConfig(seed=seed, reseed_after_execution=True)
                               if seed is not None else None)
    return ds.map_batches(decode_train_batch, fn_kwargs=dict(aug=aug, seed=seed, on_device=augment_on_device,
                                                              **decode), **map_args)


def datasets_for(cfg, splits: tuple[str, ...] = ("train", "val"), *, use_gpu: bool = False,
                 corrupt_ledger=None) -> dict:
    """The Ray datasets of an `ExperimentConfig`'s splits (those it names), keyed by split.

    `use_gpu`: whether the training workers get GPUs (`ray_setup.use_gpu`); with
    `augment.on_device: auto` the training split then ships windows for on-device augmentation.
    """
    d = cfg.data
    common = dict(num_cpus=d.decode_cpus, decode_batch_size=d.decode_batch_size, decode_timeout_s=d.decode_timeout_s,
                  corrupt_ledger=corrupt_ledger)
    out = {}
    if "train" in splits and d.train:
        out["train"] = build_dataset(d.train, "train", ClipSpec.from_config(d), AugmentSpec.from_config(cfg.augment),
                                     seed=cfg.seed, shuffle=d.shuffle,
                                     augment_on_device=cfg.augment.resolve_on_device(use_gpu), **common)
    if "val" in splits and d.val:
        out["val"] = build_dataset(d.val, "val", ClipSpec.from_config(d, cfg.eval), None, **common)
    return out

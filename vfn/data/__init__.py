"""Video data: manifests, Parquet video shards, clip decoding/augmentation, Ray Data streaming,
and a synthetic temporal-order dataset.

Modules (import what you need; Ray: `pipeline` and the corrupt-video `ledger` it reports to, and
`ingest` only when packing on a cluster):
  manifest  read_manifest, write_manifest, read_label_names, VideoRecord, ManifestError
  datasets  prepare: manifests with the published label ids from a dataset's own annotation files
            (one reader module per dataset; the published class lists in datasets/labels/)
  shards    the shard format and its reading: SCHEMA, list_shards, count_videos, read_metadata, read_encodings
  ingest    writing shards: write_shards, ShardReport (probe, re-encode, pack; locally or as Ray tasks)
  transcode Encoding, transcode (seek-friendly re-encoding while packing, PyAV/libx264)
  video     ClipSpec, AugmentSpec, AugmentParams, CorruptVideoError, train_indices, eval_indices,
            open_video, read_frames, train_window_shape (specs, frame sampling, decord reading; no torch, no Ray)
  clips     decode_train_clip, decode_test_views, normalize, VideoMixup, draw_augment_params,
            decode_train_window (torch, no Ray)
  device_augment  DeviceAugment (on-device training augmentation, pure torch)
  guard     DecodeGuard, guard_for, DecodeTimeout (decoding in a child process with a time limit)
  pipeline  build_dataset, check_corrupt_budget, drop_invalid, TooManyCorruptVideos
  ledger    CorruptLedger, CorruptWatch: which corrupt videos a run skipped, by name (a Ray actor)
  synth     make_synthetic_dataset, SynthDataset, render_video, encode_mp4

Implements the Data API contract of the project notes as written, with additions only:
AugmentSpec.hue / .ratio; build_dataset keywords (seed, shuffle, decode_batch_size, num_cpus,
concurrency, block_bytes, ...); drop_invalid(batch) -> (batch, n_dropped) for consumers;
read_metadata(shards) for per-video metadata without the bytes (val `index` i is row i of it
sorted by `index`).
"""

"""Video data: manifests, Parquet video shards, clip decoding/augmentation, Ray Data streaming,
and a synthetic temporal-order dataset.

Modules (import what you need; only `pipeline.build_dataset` needs Ray):
  manifest  read_manifest, read_label_names, VideoRecord, ManifestError
  shards    write_shards, list_shards, count_videos, read_metadata
  clips     ClipSpec, AugmentSpec, decode_train_clip, decode_test_views, normalize, VideoMixup,
            CorruptVideoError (pure functions, no Ray)
  pipeline  build_dataset, check_corrupt_budget, drop_invalid, TooManyCorruptVideos
  synth     make_synthetic_dataset, SynthDataset

Implements the Data API contract of the project notes as written; additions only (keyword
arguments with defaults, helpers such as drop_invalid/read_metadata).
"""

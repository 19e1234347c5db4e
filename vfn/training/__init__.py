"""Training with Ray Train.

  build       model, optimiser and schedule from a config (one place for every caller)
  step        TrainStep: the one training step (precision, accumulation, corrupt clips, EMA)
  worker      train_loop_per_worker: the loop each Ray Train worker runs
  driver      run_training: pre-flight checks, then the TorchTrainer, tracking and the run index
  checkpoints saving, resuming and finding a run's checkpoints
  progress    the live progress line and what workers post to it
  image_pretrain, in_memory   training without Ray (the image FocalNet to inflate; synthetic clips)
"""

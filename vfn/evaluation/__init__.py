"""Multi-view evaluation (clips x crops) of a checkpoint, a training run or released weights.

  metrics  EvalAccumulator and EvalResult: top-1/top-5, per-class accuracy, confusion
  worker   the loop each Ray Train worker runs over its share of the videos
  driver   run_evaluation: resolves what to evaluate, runs the workers, logs to MLflow
"""

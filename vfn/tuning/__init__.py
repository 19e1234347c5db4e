"""Sweeps and ablations with Ray Tune.

  sweep       run_sweep: the Tuner over the spec's search space, and the parent MLflow run
  trial       what each trial runs: the base config with the trial's overrides, trained once
  schedulers  the trial schedulers a spec may name (`vfn.config.names.SCHEDULERS`)
  report      the ablation table (mean and std over seeds) and its figure
  progress    the sweep's live progress line
"""

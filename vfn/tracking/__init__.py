"""Everything that talks to MLflow: no other package imports it.

  runs     the tracking URI, runs, metrics, params, artifacts and the learning-curve figures
  figures  the matplotlib figures logged with runs (confusion matrix, learning curves)
  models   logging checkpoints as MLflow models and loading `models:/` and `runs:/` URIs
  sweeps   a sweep's parent run and its stopped trials
  compare  runs side by side (`vfn compare`)
"""

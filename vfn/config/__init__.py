"""The experiment configuration: one validated schema, its YAML files and dotted overrides.

  names   MODELS, DESIGNS, COMPILE_MODES: the choices the schema and `vfn.model` share (torch-free)
  keys    the one walker of the schema: dotted keys, `key=value` overrides, one-line validation errors
  schema  ExperimentConfig and its sections
  load    load_config (YAML with `extends:`, overrides, absolute paths), diff
  sweep   SweepSpec and load_sweep (sweep and ablation YAMLs)

Nothing is re-exported here, so `vfn.model` can import `vfn.config.names` without pydantic.
"""

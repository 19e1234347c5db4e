"""Video-FocalNets: model (`vfn.model`) and Ray/MLflow experiment platform (`vfn.platform`)."""

__version__ = "0.1.0"

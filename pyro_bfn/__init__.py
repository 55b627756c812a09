"""pyro-bfn: Bayesian Flow Networks (Graves et al. 2023, arXiv 2308.07037) for Pyro."""

__version__ = "0.1.0"

"""Training real networks with the generated kernels: data sets, the SGD loop, plots.

The commands `symprop train` and `symprop predict` (symbolic/commands/) are thin wrappers
around `training.train` and `training.datasets`.
"""

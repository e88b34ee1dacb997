"""Kernels written by symprop's code generator. Do not edit: run `symprop generate`.

layers.py holds <layer>_forward / <layer>_backward for every registered layer; net_<name>.py
holds the fused network kernels of the built-in networks (see codegen/network.py).
"""

"""Kernels written by symprop's code generator. Do not edit: run `symprop generate`.

layers.py holds <layer>_forward / <layer>_backward for every registered layer whose kernels
its arrays can size (a recurrent layer's steps come from its spec, so it
is compiled inside networks only); net_<name>.py holds the fused network kernels of the
built-in networks (see codegen/network.py).
"""

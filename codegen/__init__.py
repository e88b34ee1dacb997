"""symprop's printing side: SymPy rules in, numba-jitted Python source out.

``printer`` turns expressions into Python, ``layer_kernels`` and ``network`` assemble modules
from the registry's derivations, ``files`` writes them (atomically, with a header and a hash)
and checks them for staleness.
"""

"""symprop's symbolic side: layers defined once as SymPy formulas, their derivatives derived."""

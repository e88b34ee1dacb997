"""One module per op family. Each op is one class; ``symbolic/layers.py`` registers instances."""

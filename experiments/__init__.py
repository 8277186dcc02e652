"""The experiments beyond single runs: running the grids and analyses, and reporting their stored results."""

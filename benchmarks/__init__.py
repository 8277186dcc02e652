"""Speed: this repository against itself and against the original code, on the current machine."""

"""The model zoo: the commands that build it (make), and the sweeps that picked each attack's recipe (sweep)."""

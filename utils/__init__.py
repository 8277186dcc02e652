"""Shared pieces: errors, device and precision, seeding, the training loop and evaluator, checkpoints,
result files. Every entry point uses these; none has a private copy."""


class UserError(Exception):
    """Bad input from the user: entry points print its message as one line and exit non-zero."""

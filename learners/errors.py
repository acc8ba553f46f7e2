"""Errors that end a training run, importable without torch (the CLI maps them to exit codes)."""


class DivergenceError(RuntimeError):
    """Too many updates in a row were skipped or rolled back; the weights are the last good ones."""

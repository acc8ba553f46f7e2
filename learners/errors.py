"""Errors that end a training run, importable without torch (the CLI maps them to exit codes)."""


class DivergenceError(RuntimeError):
    """Too many updates in a row were skipped or rolled back; the weights are the last good ones."""


class LearnerLost(RuntimeError):
    """The learner's Ray actor died (its node lost, its process killed); the run stops, and
    ``--resume`` continues it from the last checkpoint."""

"""Character-level text for next-character prediction (``run.kind: text``; STRAW's non-RL
experiment, Vezhnevets et al. 2016 §4.3).

A corpus is a UTF-8 text file given by path, or one that ships with Python itself:

* ``python_docs``: the topic texts of the Python language reference that ``pydoc`` shows
  (``pydoc_data.topics``, part of the standard library: about 465,000 characters of English
  prose and code on Python 3.11; the exact text follows the Python version).

The vocabulary is the set of characters of the whole text (so every held-out character has
an index); the last ``test_fraction`` of the text is held out, contiguous, never trained on.
:class:`StreamBatches` cuts a token array into ``B`` contiguous streams and hands out
consecutive windows, the usual truncated-BPTT scheme: a window's inputs are characters
``t … t+T−1`` of each stream and its targets ``t+1 … t+T``, and the next window carries on
where this one stopped. numpy only (envs/ never imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTIN_TEXTS = ("python_docs",)


class TextError(ValueError):
    """A text that cannot be used: missing, unreadable, not UTF-8, or too short."""


@dataclass(frozen=True)
class TextCorpus:
    name: str
    vocabulary: str  # index -> character
    train: np.ndarray  # [N] int64 character indices
    test: np.ndarray  # [M] int64

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def decode(self, tokens: np.ndarray) -> str:
        return "".join(self.vocabulary[int(t)] for t in tokens)


def read_text(source: str) -> tuple[str, str]:
    """``(name, text)`` of a builtin corpus or a UTF-8 file."""
    if source == "python_docs":
        from pydoc_data.topics import topics

        return source, "\n\n".join(topics[name] for name in sorted(topics))
    path = Path(source).expanduser()
    if not path.is_file():
        raise TextError(f"text {source!r}: no such file (or use a builtin text: {', '.join(BUILTIN_TEXTS)})")
    try:
        return path.name, path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TextError(f"text {source!r} is not UTF-8 (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise TextError(f"text {source!r} cannot be read: {error.strerror}") from None


def load_text(source: str, *, test_fraction: float, minimum_characters: int = 1000) -> TextCorpus:
    """``source`` (a builtin name or a path) as character indices, its tail held out."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    name, text = read_text(source)
    if len(text) < minimum_characters:
        raise TextError(f"text {source!r} has {len(text)} characters; at least {minimum_characters} are needed")
    vocabulary = "".join(sorted(set(text)))
    index = {character: i for i, character in enumerate(vocabulary)}
    tokens = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    split = len(tokens) - int(round(test_fraction * len(tokens)))
    return TextCorpus(name, vocabulary, tokens[:split], tokens[split:])


class StreamBatches:
    """Consecutive ``[T+1, B]`` windows of ``B`` contiguous streams of ``tokens``.

    Stream ``b`` is ``tokens[b·L : (b+1)·L]`` with ``L = len(tokens) // B``. Each
    :meth:`next` returns the window starting where the previous one ended (overlapping it
    by the one character that was the previous target and is now the first input);
    ``wrapped`` tells that the streams ran out and started over (state must be reset).
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, unroll_length: int):
        length = len(tokens) // batch_size
        if length < unroll_length + 1:
            raise TextError(
                f"{len(tokens)} characters cut into {batch_size} streams leave {length} per stream, fewer than one "
                f"window of {unroll_length + 1}; lower the batch size or the unroll length"
            )
        self.streams = tokens[: length * batch_size].reshape(batch_size, length).T  # [L, B]
        self.unroll_length = unroll_length
        self.position = 0

    @property
    def windows_per_pass(self) -> int:
        return (len(self.streams) - 1) // self.unroll_length

    def next(self) -> tuple[np.ndarray, bool]:
        wrapped = self.position + self.unroll_length + 1 > len(self.streams)
        if wrapped:
            self.position = 0
        window = self.streams[self.position : self.position + self.unroll_length + 1]
        self.position += self.unroll_length
        return window, wrapped

"""Exceptions raised by the truthwatch package."""

from __future__ import annotations


class TruthwatchError(Exception):
    """Base class of every error the package raises on purpose."""


class ModelLoadError(TruthwatchError):
    """An exported model folder cannot be used; the message names the file and what is wrong.

    Parameters
    ----------
    path
        The file (or folder) at fault.
    reason
        What is wrong with it, in words a person can act on.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class InputShapeError(TruthwatchError, ValueError):
    """A batch handed to the model runtime does not have the shape the model card declares."""

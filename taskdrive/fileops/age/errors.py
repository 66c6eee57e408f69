"""The errors of the age codec, raised for the header and the payload alike."""

from __future__ import annotations


class AgeError(Exception):
    """The input is not a valid passphrase-encrypted age file, or it was modified or truncated."""


class WrongPassphrase(AgeError):
    """The scrypt stanza could not be unwrapped: wrong passphrase (or a corrupted stanza)."""

"""The small exception hierarchy shared by the whole package."""

from __future__ import annotations


class PairwatchError(Exception):
    """Base class of every error pairwatch raises on purpose."""


class ConfigError(PairwatchError):
    """A settings or rules file (or environment variable) is invalid.

    ``problems`` holds one human-readable line per problem, each naming the
    file (or variable), the key and what is wrong.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreError(PairwatchError):
    """The SQLite store cannot be opened or migrated."""

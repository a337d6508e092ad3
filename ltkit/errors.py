"""User errors: mistakes in input (a missing file, a bad config key, a malformed line) rather than bugs.

Stages raise them with a message that names the file, line or field; `python -m ltkit` prints that
message as one `error: ...` line on stderr and exits with status 2 (the traceback only with --debug).
"""
from __future__ import annotations

import argparse


class UserError(ValueError):
    """A mistake the user can fix (a setting, a path, a file's contents); the message says what and where.

    A ValueError, since it is one: a value the user gave is wrong. Other ValueErrors are bugs and keep
    their traceback.
    """


class ConfigError(UserError):
    """A config file or override that does not fit `ltkit.config.Config`; names the key and the file."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse for every stage's command line: a bad option or choice is a user error like any other.

    `python -m ltkit` prints it as one `error: ...` line and exits with 2 (argparse's own `error` would
    print usage and exit from inside the stage, which callers of `main(argv)` cannot catch as a result).
    """

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see --help)")

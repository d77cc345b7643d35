"""Hand text to the user's pager (``$PAGER``), for the terminal app's "page this entry".

The command is split like a shell would (``less -R`` works) but run without one, so
nothing in the text or the variable is interpreted by a shell.
"""

from __future__ import annotations

import os
import shlex
import subprocess


class PagerError(Exception):
    """The pager could not be started, or ``$PAGER`` is not a command."""


def pager_command(environ: dict[str, str] | None = None) -> list[str] | None:
    """``$PAGER`` as an argument list; None when it is unset or blank."""
    value = (os.environ if environ is None else environ).get("PAGER", "").strip()
    if not value:
        return None
    try:
        command = shlex.split(value)
    except ValueError as exc:
        raise PagerError(f"PAGER={value!r} is not a command: {exc}") from exc
    return command or None


def run_pager(command: list[str], text: str) -> int:
    """Run ``command`` with ``text`` on its standard input; wait for it; its exit status."""
    try:
        completed = subprocess.run(command, input=text.encode("utf-8", "replace"), check=False)
    except OSError as exc:
        raise PagerError(f"could not run {command[0]}: {exc.strerror or exc}") from exc
    return completed.returncode

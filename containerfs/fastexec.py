"""Hand ``containerfs exec`` to its C program (``kernel/cfsexec.c``) before anything heavy loads.

``containerfs exec`` is done by ``containerfs-exec``, a small C program (docs/design.md,
"Entering"): Python's start-up alone costs several times what entering a container
does.  Where ``containerfs`` is that program itself (``make`` installs it so), Python
never starts for ``exec``; where it is pip's entry script or ``python -m containerfs``,
this module replaces the process with the program as early as it can.  The program
gives a command line it does not take as it is (``--help``, a usage error) back to
``python -m containerfs`` with :data:`FALLBACK_ENV` set, and then
:mod:`containerfs.execute` (also the path when the program is missing) and argparse
answer as they always did.
"""

import os
import sys

#: Set by the C program when it hands a command line back; removed at once, so the
#: command run in the container never sees it.
FALLBACK_ENV = "CONTAINERFS_EXEC_IN_PYTHON"

_asked = False  # hand_over runs once per process (``__main__`` and ``cli.main`` both ask)

#: The program's name (``containerfs.defaults.find_program`` finds it).
PROGRAM = "containerfs-exec"


def hand_over(args: list[str]) -> None:
    """``exec`` the C program for ``containerfs exec ARGS`` (``args[0] == "exec"``);
    returns only when Python is to do it: another command, a command line sent
    back by the program, or no program found or runnable."""
    global _asked
    if _asked or args[:1] != ["exec"]:
        return
    _asked = True
    if os.environ.pop(FALLBACK_ENV, None) is not None:
        return
    from .defaults import find_program

    program = find_program(PROGRAM)
    if program is None:
        return
    try:
        os.execv(program, [program, sys.executable, *args])
    except OSError:
        return  # the Python implementation then

"""Default paths, in a module of their own: ``containerfs exec`` must not pay for
importing the daemon (trio, pyfuse3: about 250 ms) just to print ``--help``."""

import os
import sys

DEFAULT_MOUNTPOINT = "/run/containerfs"
DEFAULT_STATE_DIR = "/run/containerfs-state"


def find_program(name: str) -> str | None:
    """One of the C programs ``make`` builds (``containerfs-pin``,
    ``containerfs-nsscan``): beside the interpreter (the venv's bin), else on PATH."""
    import shutil  # not at the top: ``containerfs exec`` imports this module

    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)

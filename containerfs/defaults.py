"""Default paths, in a module of their own: ``containerfs exec`` must not pay for
importing the daemon (trio, pyfuse3: about 250 ms) just to print ``--help``."""

import os
import sys

DEFAULT_MOUNTPOINT = "/run/containerfs"
DEFAULT_STATE_DIR = "/run/containerfs-state"
#: How long a request worker keeps looking for the next request before it
#: parks (``containerfs mount --busy-poll``; needs the patched pyfuse3).
DEFAULT_BUSY_POLL_US = 50
MAX_BUSY_POLL_US = 1000
#: The prefix of the containers' ``ip netns`` names (``engine/netnames.py``).
DEFAULT_NETNS_PREFIX = "cfs"


#: Where a wheel puts the C programs (setup.py builds them into the package).
PACKAGE_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def find_program(name: str) -> str | None:
    """One of the C programs (``containerfs-pin``, ``containerfs-nsscan``): in the
    package (a wheel or ``pip install`` built them there, so they match this code),
    else beside the interpreter (the venv's bin, where ``make`` builds them for its
    editable install), else on PATH."""
    for where in (PACKAGE_BIN, os.path.dirname(sys.executable)):
        path = os.path.join(where, name)
        if os.access(path, os.X_OK):
            return path
    import shutil  # only here: ``containerfs exec`` finds its program before it (7 ms)

    return shutil.which(name)

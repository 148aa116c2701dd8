"""Default paths, in a module of their own: ``containerfs exec`` must not pay for
importing the daemon (trio, pyfuse3: about 250 ms) just to print ``--help``."""

DEFAULT_MOUNTPOINT = "/run/containerfs"
DEFAULT_STATE_DIR = "/run/containerfs-state"

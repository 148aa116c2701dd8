"""The service behind the mount: the daemon's parts around one runtime.

``daemon.Daemon`` is what the FUSE adapter calls; it hands each request to the
part whose job it is (``containers``, ``files``, ``tasks``, ``releases``),
which share a ``runtime.Runtime`` and save through ``persistence``.
``startup`` builds all of it and runs the mount.
"""

"""``containerfs oci`` (and ``containerfs-runc``): an OCI runtime front end with runc's
command line, so that podman and containerd make their containers as containers of a
mounted containerfs.

runc does every process-level step (root file system, mounts, capabilities, seccomp,
rlimits, user, console, hooks, ``linux.resources``) and makes the namespaces; this
package puts a containerfs container around it (docs/design.md, "OCI runtime front
end"):

- ``args``    runc's command line, parsed as Go's ``flag`` package does (pure)
- ``bundle``  the private copy of ``config.json`` runc is given (pure)
- ``log``     errors as runc gives them: stderr, one line in ``--log``
- ``tree``    the containerfs side: the parent, ``mkdir``, ``container.claim``, views
- ``runc``    finding runc and running it as a direct child, stdio passed through
- ``frontend`` the commands: create, state, delete, features, ``--version``; the rest
  are runc's own

Nothing here makes a system call of its own: it reads and writes files of the mount
and of runc's state, and runs runc.
"""

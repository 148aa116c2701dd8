"""The private copy of a bundle's ``config.json`` that runc is given.

runc reads the bundle the caller names; the front end hands it a copy instead, in a
directory of its own, with three changes (README.md, "OCI runtimes: podman and
containerd", has the whole field mapping):

- ``root.path`` and the sources of bind mounts made absolute against the caller's
  bundle, since runc resolves them against the bundle directory it is given;
- ``linux.cgroupsPath`` replaced by the container's cgroup in containerfs, as an
  absolute path (one path, the same in every hierarchy): runc then places the init
  and applies ``linux.resources`` in containerfs's directories. A relative path
  would make runc put it below its own cgroup, and at the root of the cgroup2 tree
  on a hybrid host;
- the ``linux.sysctl`` keys that containerfs has a namespace knob for, in a
  namespace runc makes, taken out: they are written to the container's internal
  views once its namespaces are claimed, so that a parent's external limit applies
  on top, as for any container. The rest stay for runc.

Pure: no I/O (the caller reads and writes the files).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: OCI namespace types -> containerfs kinds.
NAMESPACE_KINDS: dict[str, str] = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

#: runc's rule for ids (``libcontainer``: letters, digits, ``_ + - .``).
_RUNC_ID = re.compile(r"^[\w+\-.]+$", re.ASCII)


class BundleError(Exception):
    """A bundle or id the front end cannot run; the message says why."""


def check_id(cid: str) -> None:
    """runc's id rule, and containerfs's on names: no leading dot, 255 bytes at most."""
    if not _RUNC_ID.match(cid) or cid in (".", ".."):
        raise BundleError("invalid container ID format")
    if cid.startswith("."):
        raise BundleError(
            f"invalid container ID format: {cid}: containerfs names cannot start with '.'"
        )
    if len(cid.encode()) > 255:
        raise BundleError(f"invalid container ID format: {cid[:32]}...: longer than 255 bytes")


@dataclass(frozen=True)
class Rewritten:
    """The private config, and the knob values to write to internal views
    (``ipc.shm_mni.internal`` -> ``"4096"``) once the namespaces are claimed."""

    config: dict[str, Any]
    views: dict[str, str]


def made_kinds(config: Mapping[str, Any]) -> frozenset[str]:
    """The containerfs kinds of the namespaces runc makes (those without a ``path``)."""
    out = set()
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        kind = NAMESPACE_KINDS.get(str(ns.get("type", "")))
        if kind is not None and not ns.get("path"):
            out.add(kind)
    return frozenset(out)


def _is_bind(mount: Mapping[str, Any]) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def _normal_key(key: str) -> str:
    """``net/core/somaxconn`` and ``net.core.somaxconn`` name the same sysctl (runc
    takes both); the knob table uses dots."""
    return key.replace("/", ".")


def rewrite(
    config: Mapping[str, Any],
    bundle: str,
    cgroups_path: str,
    knobs: Mapping[str, tuple[str, str]],
) -> Rewritten:
    """The private config for ``bundle`` (an absolute path).

    ``knobs`` maps a sysctl (``kernel.shmmni``) to its containerfs kind and knob
    file (``("ipc", "ipc.shm_mni")``): those the mount offers. A key is taken out
    only when runc makes that kind's namespace here (else runc keeps it: the host's
    or a joined namespace is no knob of this container's)."""
    if not os.path.isabs(bundle):
        raise BundleError(f"bundle {bundle} is not an absolute path")
    if not cgroups_path.startswith("/"):
        raise BundleError(f"cgroup path {cgroups_path} is not absolute")
    out: dict[str, Any] = copy.deepcopy(dict(config))
    root = out.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise BundleError("root.path is missing from config.json")
    root["path"] = os.path.normpath(os.path.join(bundle, root["path"]))
    for mount in out.get("mounts") or []:
        source = mount.get("source")
        if _is_bind(mount) and isinstance(source, str) and not os.path.isabs(source):
            mount["source"] = os.path.normpath(os.path.join(bundle, source))
    linux = out.setdefault("linux", {})
    if not isinstance(linux, dict):
        raise BundleError("linux in config.json is not an object")
    linux["cgroupsPath"] = cgroups_path
    made = made_kinds(out)
    views: dict[str, str] = {}
    sysctl = linux.get("sysctl")
    if isinstance(sysctl, dict):
        kept: dict[str, Any] = {}
        for key, value in sysctl.items():
            known = knobs.get(_normal_key(str(key)))
            if known is not None and known[0] in made and isinstance(value, str):
                views[f"{known[1]}.internal"] = " ".join(value.split())
            else:
                kept[key] = value
        linux["sysctl"] = kept
    return Rewritten(out, views)


def knob_table(offered: frozenset[str] | None = None) -> dict[str, tuple[str, str]]:
    """sysctl -> (kind, knob file) of every namespace knob containerfs has; with
    ``offered``, only those whose ``.internal`` file the mount shows (``pid.max``
    is a knob from Linux 6.14 on)."""
    from ..engine.catalog import IPC_KNOBS, NET_KNOBS, PID_KNOBS

    out = {}
    for knob in (*IPC_KNOBS, *NET_KNOBS, *PID_KNOBS):
        if offered is None or f"{knob.file}.internal" in offered:
            out[knob.sysctl] = (knob.kind, knob.file)
    return out

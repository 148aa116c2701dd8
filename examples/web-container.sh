#!/bin/sh
# A container with its own hostname and a process limit, then a shell command in it.
# Usage: examples/web-container.sh [MOUNTPOINT]   (containerfs must be mounted there)
set -eu
cfs=${1:-/run/containerfs}
cd "$cfs"

mkdir web                          # new ipc/uts/net/pid/mnt/cgroup/time namespaces + cgroups
echo web-1 > web/uts.hostname      # the container's own hostname
echo 20    > web/pids.max          # at most 20 processes inside
echo 256M  > web/memory.max        # cgroup v2 syntax, translated on v1 hosts

cat web/container.subsystems       # what web owns and what it shares
containerfs exec "$cfs/web" -- sh -c 'hostname; echo "my pid inside: $$"; ip -brief link'

rmdir web                          # frees the namespaces and cgroups

#!/bin/sh
# Group running processes under limits without new namespaces: a container that owns
# only cgroup controllers accepts `echo PID > tasks`, as cgroupfs does.
# Usage: examples/controllers-only.sh [MOUNTPOINT]
set -eu
cfs=${1:-/run/containerfs}
cd "$cfs"

echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree   # children: controllers only
mkdir batch
echo 100 > batch/cpu.weight
echo '50000 100000' > batch/cpu.max                                   # half a CPU

sleep 60 &
echo $! > batch/tasks              # a running process moves in
cat batch/tasks
cat batch/container.events         # populated 1
kill $!; wait $! 2>/dev/null || true
rmdir batch
echo '+ipc +uts +net +pid +mnt +cgroup +time' > container.subtree    # back to the default

#!/bin/sh
# Nesting: a child shares every namespace of its parent except the kinds listed in the
# parent's container.subtree.
# Usage: examples/nested.sh [MOUNTPOINT]
set -eu
cfs=${1:-/run/containerfs}
cd "$cfs"

mkdir site
echo +uts > site/container.subtree  # children of site get their own hostname, nothing else
mkdir site/a site/b
echo a > site/a/uts.hostname
echo b > site/b/uts.hostname
for c in a b; do
  containerfs exec "$cfs/site/$c" -- sh -c 'echo "$(hostname): pid ns $(readlink /proc/self/ns/pid)"'
done
rmdir site/a site/b site

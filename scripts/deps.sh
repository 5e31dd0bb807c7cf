#!/bin/sh
# deps.sh — install the Debian packages a make target needs, if missing.
# Usage: scripts/deps.sh build|test|demo|bench
# As root it runs apt-get; otherwise it prints the exact command to run.
set -eu
build="gcc make flex bison pkg-config libopenblas-dev zlib1g-dev"
case "${1:-build}" in
build) want="$build" ;;
test)  want="$build clang python3-torch python3-numpy graphviz libclang-dev libclang-rt-14-dev gnuplot-nox dataset-fashion-mnist" ;;
demo)  want="$build dataset-fashion-mnist gnuplot-nox" ;;
bench) want="$build python3-torch python3-numpy dataset-fashion-mnist" ;;
*) echo "deps.sh: unknown target '$1'" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps.sh: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
else
    echo "deps.sh: missing Debian packages; run as root:" >&2
    echo "  apt-get install$missing" >&2
    exit 1
fi

#!/usr/bin/env bash
# Builds Citus 12.1 (schema-based sharding) for the machine's Debian PostgreSQL and installs
# it into that server's extension folders, for machines whose package sources lack Citus.
#
#   scripts/build-citus.sh SOURCE [TAG]        (or: make citus CITUS_SOURCE=SOURCE)
#
# SOURCE is a clone of https://github.com/citusdata/citus (a bare git directory works), or an
# unpacked release tarball. TAG (default v12.1.9; 12.1 supports PostgreSQL 14-16) is taken
# out of a git SOURCE with `git archive`, so the checkout itself is never modified.
# PGMAJOR (default: the newest /usr/lib/postgresql/N) picks the server. Needs root for
# apt-get and the install; about a minute on 2 cores. The tests' Citus fixture
# (tests/citus.py) uses what this installs; without it those tests skip.
set -euo pipefail

src=${1:?usage: scripts/build-citus.sh SOURCE [TAG]}
tag=${2:-v12.1.9}
pgmajor=${PGMAJOR:-$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)}
[ -n "$pgmajor" ] || { echo "build-citus: no /usr/lib/postgresql/N; install postgresql first" >&2; exit 1; }
sudo=$([ "$(id -u)" = 0 ] || echo sudo)

# Build dependencies: the server headers and the libraries Citus' configure looks for.
packages=("postgresql-$pgmajor" "postgresql-server-dev-$pgmajor" liblz4-dev libzstd-dev
  libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev make gcc)
if ! $sudo apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1; then
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$src" archive --format=tar "$tag" | tar -x -C "$build"
else
  cp -a "$src"/. "$build"/
fi

cd "$build"
step() {  # run a build step quietly; on failure show the end of its log
  local log=$1; shift
  "$@" >"$log" 2>&1 || { echo "build-citus: '$*' failed:" >&2; tail -30 "$log" >&2; exit 1; }
}
# libcurl only serves Citus' anonymous usage statistics; building without it sends none.
step configure.log env PG_CONFIG="/usr/lib/postgresql/$pgmajor/bin/pg_config" ./configure --without-libcurl
step make.log make -j"$(nproc)"
step install.log $sudo make install

test -f "/usr/lib/postgresql/$pgmajor/lib/citus.so"
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" src/backend/distributed/citus.control)
echo "citus $version installed for PostgreSQL $pgmajor"

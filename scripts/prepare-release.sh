#!/usr/bin/env bash
# Builds a bosh-libvirt-cpi release tarball without touching the checkout.
#
#   scripts/prepare-release.sh [--version V] [--tarball PATH] [--skip-build] [--final]
#
# The release's packages take their files from blobs: dist/cpi.mjs (the bundled CPI) and
# the official Node.js linux-x64 tarball. Both change with every build, so instead of
# `bosh add-blob` in the checkout (which rewrites config/blobs.yml) this script copies
# jobs/, packages/ and config/ into a staging directory, adds the blobs there and runs
# `bosh create-release` on it. `git status` stays clean; the tarball lands under .cache/.
#
# --final also runs `bosh finalize-release` against the checkout, which writes
# releases/ and .final_builds/ (commit those) and stores the packages in the blobstore
# config/final.yml names.
#
# Needs: bosh (CLI v7+), node/npm, curl, sha256sum, sha1sum, tar.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=${NODE_VERSION:-v20.20.2}
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
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { printf '[prepare-release] %s\n' "$*" >&2; }
for tool in bosh node npm curl sha256sum sha1sum tar; do
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

# Node.js, verified against the release's published SHASUMS256.txt.
node_file="node-${NODE_VERSION}-linux-x64.tar.xz"
node_dir=.cache/node
mkdir -p "$node_dir"
if [ ! -s "$node_dir/$node_file" ]; then
  log "downloading $node_file"
  curl -fsSL -o "$node_dir/$node_file.part" "https://nodejs.org/dist/${NODE_VERSION}/${node_file}"
  mv "$node_dir/$node_file.part" "$node_dir/$node_file"
fi
curl -fsSL "https://nodejs.org/dist/${NODE_VERSION}/SHASUMS256.txt" | grep " ${node_file}\$" >"$node_dir/$node_file.sha256"
(cd "$node_dir" && sha256sum -c --quiet "$node_file.sha256")

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R jobs packages config "$staging/"
mkdir -p "$staging/src"
printf -- '--- {}\n' >"$staging/config/blobs.yml"
# create-env and directors read the version from the tarball; keep the staging dir a
# plain directory (no git), so create-release records commit "non-git".
log "adding blobs in $staging"
bosh add-blob --dir "$staging" dist/cpi.mjs libvirt_cpi/cpi.mjs >/dev/null
bosh add-blob --dir "$staging" dist/cpi-core.mjs libvirt_cpi/cpi-core.mjs >/dev/null
bosh add-blob --dir "$staging" "$node_dir/$node_file" "node/$node_file" >/dev/null

log "bosh create-release $version"
bosh create-release --dir "$staging" --name bosh-libvirt-cpi --version "$version" --tarball "$tarball" --force >/dev/null

if [ "$final" = 1 ]; then
  log "bosh finalize-release (writes releases/ and .final_builds/ in the checkout)"
  bosh finalize-release --dir . --name bosh-libvirt-cpi --version "$version" "$tarball"
fi

sha1=$(sha1sum "$tarball" | cut -d' ' -f1)
log "release: $tarball (sha1 $sha1)"
echo "$tarball"

#!/usr/bin/env bash
# Builds reel's image from the Containerfile with buildah (no Docker engine needed):
#   scripts/image.sh [TAG]        (default localhost/reel:0.1.0)
# Where the Containerfile's base cannot be pulled (no registry but Debian's packages), it
# is made first: debootstrap --variant=minbase bookworm, trimmed as Debian's slim images
# are, imported under the FROM line's name and kept (.reel-cache/image/ holds the rootfs).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/reel:0.1.0}
BASE=$(awk '/^FROM /{print $2; exit}' Containerfile)
CACHE=.reel-cache/image
mkdir -p "$CACHE"

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1 && ! timeout 60 buildah pull -q "$BASE" >/dev/null 2>&1; then
  rootfs=$CACHE/bookworm-minbase.tar
  if [ ! -f "$rootfs" ]; then
    echo "making $BASE from Debian's packages (debootstrap, a few minutes, once)"
    dir=$(mktemp -d "$CACHE/rootfs.XXXX")
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$CACHE/debootstrap.log"
    # What makes Debian's image "slim": no docs, manuals or translations from later installs.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
      "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
    tar -C "$dir" --numeric-owner -cf "$rootfs.part" .
    mv "$rootfs.part" "$rootfs"
    rm -rf "$dir"
  fi
  ctr=$(buildah from scratch)
  buildah add -q "$ctr" "$rootfs" / >/dev/null
  buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit -q --rm "$ctr" "$BASE" >/dev/null
  echo "made $BASE"
fi

[ -f services/tracker/player/node_modules/hls.js/dist/hls.min.js ] ||
  npm ci --prefix services/tracker/player --no-audit --no-fund --loglevel=error

ca=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then  # this machine's pip trusts a proxy's CA
  ca=(--build-arg BUILD_CA=/run/build-ca.crt --volume "$(realpath "$PIP_CERT"):/run/build-ca.crt:ro")
fi
buildah bud --isolation chroot --layers --pull=never -f Containerfile -t "$TAG" "${ca[@]}" .
buildah inspect --type image --format '{{.FromImageID}}' "$TAG" >/dev/null
echo "built $TAG"

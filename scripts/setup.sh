#!/usr/bin/env bash
# Installs everything reel needs on a fresh Debian machine: ffmpeg, Java and Maven
# (for the Kafka broker's jars), npm (hls.js for the tracker's player page) and the
# Python packages; `setup.sh test` adds Chromium (the browser the playback and status
# page tests drive), Prometheus (the dashboards' queries and the alert rules are tested
# on it), Debian's Postgres (the encrypted-links test) and kustomize v5, which renders the Kubernetes manifests (built with Go into
# .reel-cache/bin); `setup.sh image` adds buildah and debootstrap, which build the
# container image, and bubblewrap, which runs its services on a read-only root.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v npm >/dev/null || need_apt+=(npm)
if [ "${1:-}" = "test" ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  # The encrypted-links test runs Debian's Postgres: pgserver's is built without OpenSSL.
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
  # The dashboards' and alerts' queries run against a real Prometheus; promtool tests the rules.
  command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
fi
if [ "${1:-}" = "image" ]; then
  command -v buildah >/dev/null || need_apt+=(buildah)
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
  command -v bwrap >/dev/null || need_apt+=(bubblewrap)  # runs the services as the pods would
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[dev,stack]'
if [ "${1:-}" = "test" ] && [ ! -x .reel-cache/bin/kustomize ]; then
  # Debian's kubectl embeds kustomize 2.0, which has no components or patches.
  command -v go >/dev/null || { echo "setup.sh: Go is needed to build kustomize v5" >&2; exit 1; }
  GOBIN="$PWD/.reel-cache/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1
fi
# hls.js, exactly as the lockfile pins it.
npm ci --prefix services/tracker/player --no-audit --no-fund --loglevel=error
# The broker's jars, from Maven Central (the stack would fetch them on first `reel up`).
python3 -c "from reel.settings import load; from devstack.kafka import ensure_jars; ensure_jars(load().kafka_libs)"

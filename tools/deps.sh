#!/usr/bin/env bash
# Installs the Debian packages qkit needs, only those that are missing.
#   tools/deps.sh          build + run dependencies
#   tools/deps.sh --test   + the ONNX conformance data used by the tests, headless chromium
#                          and libpng for the qkit bench report test, python3-numpy for
#                          the Python package's tests
#   tools/deps.sh --bench  + comparison peers for benchmarks (python3-torch, torchvision,
#                          pillow, onnx) and
#                          node/npm for the ONNX Runtime checks (tools/ort_*.js, `npm ci`)
set -euo pipefail
pkgs=(build-essential pkg-config protobuf-c-compiler libprotobuf-c-dev libonnx-dev
      libopenblas-dev libdnnl-dev libyaml-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev
      dataset-fashion-mnist)
for a in "$@"; do
  case "$a" in
    --test) pkgs+=(libonnx-testdata clang chromium libpng-dev python3-numpy) ;;
    --bench)
      pkgs+=(python3-torch python3-torchvision python3-pil python3-onnx python3-numpy)
      # Debian's nodejs/npm conflict with a node installed another way (e.g.
      # NodeSource's nodejs, which ships npm): only add them when the commands are missing.
      command -v node >/dev/null || pkgs+=(nodejs)
      command -v npm >/dev/null || pkgs+=(npm) ;;
    *) echo "deps.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "qkit: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "qkit: need root (or sudo) to apt-get install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

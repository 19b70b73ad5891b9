#!/usr/bin/env bash
# Checks the layering of docs/ARCHITECTURE.md on the includes of src/: a file
# may include headers of its own folder and of layers below it, never one
# above. Public headers (include/qkit/NAME.h) belong to the layer listed in
# HEADER_LAYER; a header missing from that list is an error, so a new header
# is placed on purpose. Prints one line per violation and exits non-zero if
# there is any; prints "layers: ok (N includes)" otherwise.
set -u
cd "$(dirname "$0")/.."

# Bottom up; int's sub-layers in their own order; bench (the benchmark
# matrix) runs whole models, so it sits above the top of the library.
ORDER=(base tensor graph ops onnx data train zoo quant int/kernels int/qlinear int/lower qkit bench cli)
declare -A RANK
for i in "${!ORDER[@]}"; do RANK[${ORDER[$i]}]=$i; done

declare -A HEADER_LAYER=(
  [base.h]=base [cpu.h]=base [version.h]=base
  [tensor.h]=tensor
  [graph.h]=graph
  [ops.h]=ops
  [onnx.h]=onnx
  [data.h]=data
  [train.h]=train
  [zoo.h]=zoo
  [quant.h]=quant [backend.h]=quant [fold.h]=quant [ptq.h]=quant [qat.h]=quant [deploy.h]=quant
  [analyze.h]=quant [recon.h]=quant
  [int.h]=int/kernels [qrun.h]=int/lower
  [bench.h]=bench
  [registry.h]=qkit [flat.h]=qkit [qkit.h]=qkit
)

# Layer of a path under src/ (a file or a folder).
layer_of() {
  local p=${1#src/}
  case "$p" in
    int/kernels/*|int/qlinear/*|int/lower/*) echo "${p%%/*}/$(echo "$p" | cut -d/ -f2)" ;;
    *) echo "${p%%/*}" ;;
  esac
}

bad=0; n=0
while IFS= read -r f; do
  from=$(layer_of "$f")
  [ -n "${RANK[$from]+x}" ] || { echo "layers: $f: folder '$from' is not in the layer order"; bad=1; continue; }
  dir=$(dirname "$f")
  while IFS= read -r inc; do
    n=$((n + 1))
    case "$inc" in
      qkit/*)
        h=${inc#qkit/}
        to=${HEADER_LAYER[$h]:-}
        [ -n "$to" ] || { echo "layers: $f includes qkit/$h, a header with no layer in tools/check_layers.sh"; bad=1; continue; } ;;
      *.pb-c.h) continue ;;  # generated protobuf code, part of the onnx layer's build
      *)
        t=$(realpath -m --relative-to=. "$dir/$inc")
        case "$t" in src/*) ;; *) echo "layers: $f includes '$inc' outside src/"; bad=1; continue ;; esac
        to=$(layer_of "$t") ;;
    esac
    [ -n "${RANK[$to]+x}" ] || { echo "layers: $f includes '$inc' of unknown layer '$to'"; bad=1; continue; }
    if [ "${RANK[$to]}" -gt "${RANK[$from]}" ]; then
      echo "layers: $f ($from) includes '$inc' of the higher layer $to"
      bad=1
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done < <(find src -name '*.[ch]' | sort)

[ $bad -eq 0 ] && echo "layers: ok ($n includes)"
exit $bad

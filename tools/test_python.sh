#!/usr/bin/env bash
# Runs the Python package's tests (tests/python/test_qkit.py) with Debian's
# python3 and numpy against the built library ($QKIT_BUILD, default build),
# then installs into a temporary root (make install DESTDIR=...) and imports
# the installed package. Ends with "test_python: N passed, M failed"; when
# python3 or numpy is missing it says so and counts nothing (tools/deps.sh
# --test installs python3-numpy).
set -u
cd "$(dirname "$0")/.."
B=${QKIT_BUILD:-build}
py=${PYTHON:-}
if [ -z "$py" ]; then
  for c in /usr/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import numpy' 2>/dev/null; then py=$c; break; fi
  done
fi
if [ "$B" != build ]; then
  # the sanitizer builds' libqkit.so needs the ASan runtime loaded first (LD_PRELOAD)
  echo "test_python: skipped: $B is an instrumented build; the Python tests run against build/"
  echo "test_python: 0 passed, 0 failed"
  exit 0
fi
if [ -z "$py" ]; then
  echo "test_python: skipped: no python3 with numpy (apt-get install python3-numpy, or tools/deps.sh --test)"
  echo "test_python: 0 passed, 0 failed"
  exit 0
fi
out=$(QKIT_BUILD="$B" PYTHONPATH=python "$py" tests/python/test_qkit.py 2>&1); rc=$?
printf '%s\n' "$out" | grep -v '^test_python: [0-9]* passed' | tail -n 40
line=$(printf '%s\n' "$out" | grep -E '^test_python: [0-9]+ passed, [0-9]+ failed' | tail -n1)
p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); p=${p:-0}
f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/'); f=${f:-0}
[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
# make install puts the package next to the library: import it from there
# (a clean environment: no PYTHONPATH to the source tree, no QKIT_LIB).
root=$(mktemp -d /tmp/qkit_pyinst_XXXXXX)
if make -s install DESTDIR="$root" PREFIX=/usr/local PYTHON3="$py" >/dev/null 2>&1; then
  site=$(ls -d "$root"/usr/local/lib/python3*/dist-packages 2>/dev/null | head -n1)
  if [ -n "$site" ] && (cd / && env -u QKIT_LIB -u PYTHONPATH PYTHONPATH="$site" "$py" -c \
      'import qkit, os; assert qkit.__file__.startswith(os.environ["PYTHONPATH"]); assert "tensorrt" in qkit.backends()'); then
    p=$((p + 1))
  else
    echo "test_python: the installed package does not import (site: ${site:-none})"; f=$((f + 1))
  fi
else
  echo "test_python: make install DESTDIR=$root failed"; f=$((f + 1))
fi
rm -rf "$root"
echo "test_python: $p passed, $f failed"
[ "$f" -eq 0 ]

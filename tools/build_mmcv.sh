#!/usr/bin/env bash
# Build mmcv 2.1.0 *with its compiled ops* for the torch in the current Python, and cache the wheel.
#
# Why this script exists: PyPI has only an sdist of mmcv, mmdet 3.3 / mmseg 1.2 assert mmcv < 2.2.0,
# and mmcv-lite is useless (mmdet.models and mmseg.models import mmcv._ext). The 2.1.0 sdist does not
# build as shipped against our stack, so we patch two lines of its setup.py:
#   1. it imports pkg_resources, which setuptools >= 81 removed (torch pulls a newer setuptools):
#      we map the three names it uses onto importlib.metadata and packaging.version;
#   2. it hard-codes -std=c++17, and torch 2.14's headers require C++20: we switch to -std=c++20.
#
# Usage: tools/build_mmcv.sh PYTHON WHEELHOUSE
#   PYTHON      the interpreter of the target venv (torch must already be installed there)
#   WHEELHOUSE  directory outside the repo; the wheel is cached in a subfolder keyed by the
#               mmcv, torch and Python versions, so a second setup on this machine takes seconds.
# Prints the path of the cached wheel directory on its last line.
set -euo pipefail

MMCV_VERSION=2.1.0
MMCV_SDIST_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f

die() { echo "build_mmcv: $*" >&2; exit 1; }

PYTHON=${1:?usage: build_mmcv.sh PYTHON WHEELHOUSE}
WHEELHOUSE=${2:?usage: build_mmcv.sh PYTHON WHEELHOUSE}

torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])') \
  || die "torch is not importable from $PYTHON; install it before building mmcv"
py_version=$("$PYTHON" -c 'import sys; print(f"py{sys.version_info.major}{sys.version_info.minor}")')
key="mmcv-${MMCV_VERSION}_torch-${torch_version}_${py_version}_cpu"
out="$WHEELHOUSE/$key"

if compgen -G "$out/mmcv-${MMCV_VERSION}-*.whl" >/dev/null; then
  echo "build_mmcv: cached wheel found in $out" >&2
  echo "$out"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Fetching the sdist: the file itself is downloaded from the index's simple page (no `pip download`, which would
# run the sdist's setup.py to read its metadata before anything could check it) and its sha256 is checked before
# anything reads or runs it. The index is pip's own (PIP_INDEX_URL or pip config), default PyPI.
echo "build_mmcv: fetching mmcv-$MMCV_VERSION.tar.gz" >&2
index=${PIP_INDEX_URL:-$("$PYTHON" -m pip config get global.index-url 2>/dev/null || echo https://pypi.org/simple)}
mkdir -p "$work/sdist"
sdist="$work/sdist/mmcv-$MMCV_VERSION.tar.gz"
"$PYTHON" - "$index" "mmcv-$MMCV_VERSION.tar.gz" "$sdist" <<'PY' || die "cannot download mmcv-$MMCV_VERSION.tar.gz from $index"
import re, shutil, sys, urllib.parse, urllib.request
index, name, dest = sys.argv[1:]
page_url = index.rstrip("/") + "/mmcv/"
page = urllib.request.urlopen(page_url, timeout=60).read().decode()
links = [h for h in re.findall(r'href="([^"]+)"', page) if urllib.parse.urlsplit(h).path.endswith("/" + name)]
if not links:
    sys.exit(f"build_mmcv: {name} is not listed on {page_url}")
with urllib.request.urlopen(urllib.parse.urljoin(page_url, links[0]), timeout=300) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY

echo "$MMCV_SDIST_SHA256  $sdist" | sha256sum --check --status \
  || die "sha256 of mmcv-$MMCV_VERSION.tar.gz does not match $MMCV_SDIST_SHA256; refusing to build (nothing of it was run)"

tar -xzf "$sdist" -C "$work"
src="$work/mmcv-$MMCV_VERSION"

# Patch 1: pkg_resources -> importlib.metadata + packaging (same three names, same semantics here).
sed -i 's/^from pkg_resources import DistributionNotFound, get_distribution, parse_version$/from importlib.metadata import PackageNotFoundError as DistributionNotFound, distribution as get_distribution\nfrom packaging.version import parse as parse_version/' "$src/setup.py"
# Patch 2: C++17 -> C++20 (every flavour: gcc, msvc, nvcc), required by torch >= 2.13 headers.
sed -i "s/c++17'/c++20'/g" "$src/setup.py"
grep -q pkg_resources "$src/setup.py" && die "patch 1 did not apply (setup.py still imports pkg_resources)"
grep -q "c++17'" "$src/setup.py" && die "patch 2 did not apply (setup.py still asks for c++17)"

# --no-build-isolation: an isolated build has no torch and silently skips the ops.
# CFLAGS replaces Python's default flags with setuptools >= 80, so it must keep -O3 (a bare -g0
# gives an unoptimised, ~3x slower build); -g0 drops debug info: 1.4 MB wheel, build ~3x faster.
echo "build_mmcv: compiling mmcv ops on CPU (about 10 minutes on 2 cores)" >&2
"$PYTHON" -m pip install -q ninja psutil
start=$SECONDS
MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS="-DNDEBUG -fwrapv -O3 -Wall -g0" \
  "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation "$src" -w "$work/wheel" \
  || die "mmcv build failed (see the compiler output above)"
echo "build_mmcv: built in $((SECONDS - start)) s" >&2

mkdir -p "$WHEELHOUSE"
tmp_out=$(mktemp -d "$WHEELHOUSE/.tmp-$key.XXXX")
cp "$work"/wheel/mmcv-*.whl "$tmp_out/"
rm -rf "$out"
mv "$tmp_out" "$out"   # atomic: a killed build never leaves a half-cached wheel
echo "$out"

#!/usr/bin/env bash
# Build a CPU-only libtorch folder for tch 0.22.0 / torch-sys 0.22.0 (PyTorch 2.9.0) from the
# PyTorch wheels on the Python package index, fetched with the ordinary `pip download`
# (the PyTorch download site, where the official libtorch zips live, is not needed).
#
#   export LIBTORCH="$(bash scripts/libtorch.sh)"      # the last stdout line is the folder
#   export LD_LIBRARY_PATH="$LIBTORCH/lib"             # or: RUSTFLAGS="-C link-arg=-Wl,-rpath,$LIBTORCH/lib"
#   cargo build --features tch
#
# What it builds (~490 MB), cut from the manylinux x86_64 `torch==2.9.0` wheel:
#   include/            torch/include/** from the wheel
#   lib/libtorch_cpu.so, lib/libc10.so and every library of the wheel they need (libgomp);
#   lib/libcudart.so.12, lib/libcupti.so.12 from the nvidia-cuda-runtime-cu12 / nvidia-cuda-cupti-cu12
#                       wheels (libtorch_cpu.so of the CUDA build links them; no GPU is needed)
#   lib/libtorch.so     an EMPTY shared library: tch links `-ltorch`, and the wheel's libtorch.so
#                       would pull in libtorch_cuda.so (1 GB + the CUDA stack). Every symbol tch
#                       uses lives in libtorch_cpu.so / libc10.so.
#   lib/libgomp.so      a link to the wheel's libgomp, for torch-sys's `-lgomp`
#   build-version       "2.9.0+cpu", which torch-sys checks against the version it expects
#   PROVENANCE.txt      the wheels and their sha256
#   .complete           written last; when present the script does nothing but print the path
#
# Environment:
#   RECCOCKTAIL_LIBTORCH_DIR   output folder (default: <repo>/.cache/libtorch/2.9.0-cpu)
#   RECCOCKTAIL_WHEEL_DIR      wheel cache (default: <repo>/.cache/wheels)
#   RECCOCKTAIL_KEEP_WHEELS=1  keep the ~860 MB torch wheel after extraction (deleted by default)
# torch-sys reads LIBTORCH; LIBTORCH_CXX11_ABI defaults to 1, which is right for these wheels
# (checked below), and the version check passes without LIBTORCH_BYPASS_VERSION_CHECK.
#
# Needs: bash, coreutils, python3 (stdlib) with pip, gcc, readelf (binutils, comes with gcc).
set -euo pipefail

TORCH_VERSION=2.9.0
CUDA_LIBS_VERSION=12.8.90
# Exact wheels (pinned tags, so the result does not depend on the local Python) and their sha256.
TORCH_WHEEL=torch-2.9.0-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_SHA256=51de31219c97c51cf4bf2be94d622e3deb5dcc526c6dc00e97c17eaec0fc1d67
CUDART_WHEEL=nvidia_cuda_runtime_cu12-12.8.90-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUDART_SHA256=adade8dcbd0edf427b7204d480d6066d33902cab2a4707dcfc48a2d0fd44ab90
CUPTI_WHEEL=nvidia_cuda_cupti_cu12-12.8.90-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUPTI_SHA256=ea0cb07ebda26bb9b29ba82cda34849e73c166c18162d3913575b0c9db9a6182
# Bump when the folder layout changes, so that old folders are rebuilt.
LAYOUT_REV=1
MARKER_CONTENT="libtorch ${TORCH_VERSION}-cpu layout ${LAYOUT_REV}"

log() { printf 'libtorch.sh: %s\n' "$*" >&2; }
die() { printf 'libtorch.sh: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "failed at line $LINENO (exit status $?)"' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${RECCOCKTAIL_LIBTORCH_DIR:-$ROOT/.cache/libtorch/${TORCH_VERSION}-cpu}"
WHEELS="${RECCOCKTAIL_WHEEL_DIR:-$ROOT/.cache/wheels}"
case "$DEST" in /*) ;; *) DEST="$PWD/$DEST" ;; esac
case "$WHEELS" in /*) ;; *) WHEELS="$PWD/$WHEELS" ;; esac
DEST="${DEST%/}"

is_complete() { [[ -f "$DEST/.complete" && "$(cat "$DEST/.complete")" == "$MARKER_CONTENT" ]]; }

if is_complete; then
  printf '%s\n' "$DEST"
  exit 0
fi

for tool in python3 gcc readelf sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is required but not found on PATH"
done
python3 -m pip --version >/dev/null 2>&1 || die "pip is required: 'python3 -m pip' does not work"

PARENT="$(dirname "$DEST")"
mkdir -p "$PARENT" "$WHEELS"

# One build at a time for a given folder.
if command -v flock >/dev/null; then
  exec 9>"$DEST.lock"
  flock 9
  if is_complete; then printf '%s\n' "$DEST"; exit 0; fi
fi

if [[ -e "$DEST" ]]; then
  if [[ -f "$DEST/.complete" ]]; then
    log "$DEST was built by another version of this script ($(cat "$DEST/.complete")); rebuilding"
    rm -rf "$DEST"
  elif [[ -d "$DEST" && -z "$(ls -A "$DEST")" ]]; then
    rmdir "$DEST"
  else
    die "$DEST exists but is not a complete libtorch folder made by this script; remove it and rerun"
  fi
fi

T0=$SECONDS

# fetch_wheel NAME SPEC EXPECTED_SHA256: make sure $WHEELS/NAME is there and has the right hash.
fetch_wheel() {
  local name="$1" spec="$2" want="$3" file="$WHEELS/$1" got tmp
  if [[ -f "$file" ]]; then
    got="$(sha256sum "$file" | cut -d' ' -f1)"
    if [[ -z "$want" || "$got" == "$want" ]]; then
      log "using cached $name (sha256 $got)"
      return 0
    fi
    log "cached $name has sha256 $got, expected $want; downloading it again"
    rm -f "$file"
  fi
  tmp="$(mktemp -d "$WHEELS/.download.XXXXXX")"
  log "downloading $spec with pip ..."
  python3 -m pip download --no-deps --only-binary=:all: --no-cache-dir \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$tmp" "$spec" >&2 || { rm -rf "$tmp"; die "pip download of $spec failed"; }
  [[ -f "$tmp/$name" ]] || { ls -l "$tmp" >&2; rm -rf "$tmp"; die "pip did not produce $name for $spec"; }
  got="$(sha256sum "$tmp/$name" | cut -d' ' -f1)"
  if [[ -n "$want" && "$got" != "$want" ]]; then
    rm -rf "$tmp"
    die "sha256 mismatch for $name: got $got, expected $want"
  fi
  [[ -n "$want" ]] || log "no pinned sha256 for $name; computed $got"
  mv "$tmp/$name" "$file"
  rm -rf "$tmp"
  log "downloaded $name ($(du -h "$file" | cut -f1), sha256 $got)"
}

fetch_wheel "$TORCH_WHEEL" "torch==$TORCH_VERSION" "$TORCH_SHA256"
fetch_wheel "$CUDART_WHEEL" "nvidia-cuda-runtime-cu12==$CUDA_LIBS_VERSION" "$CUDART_SHA256"
fetch_wheel "$CUPTI_WHEEL" "nvidia-cuda-cupti-cu12==$CUDA_LIBS_VERSION" "$CUPTI_SHA256"

STAGE="$(mktemp -d "$DEST.partial.XXXXXX")"
chmod 755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT
log "extracting into $STAGE ..."

# Extract include/ and the dependency closure of libtorch_cpu.so + libc10.so (by their ELF NEEDED
# entries), taking each library from the torch wheel or the nvidia wheels; everything else must be
# a system library.
python3 - "$STAGE" "$WHEELS/$TORCH_WHEEL" "$WHEELS/$CUDART_WHEEL" "$WHEELS/$CUPTI_WHEEL" <<'PY'
import os, shutil, subprocess, sys, zipfile

stage, torch_wheel, *other_wheels = sys.argv[1:]
inc_dir, lib_dir = os.path.join(stage, "include"), os.path.join(stage, "lib")
os.makedirs(inc_dir); os.makedirs(lib_dir)

def copy(zf, member, dest, mode):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zf.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.chmod(dest, mode)

torch_zip = zipfile.ZipFile(torch_wheel)
n = 0
for info in torch_zip.infolist():
    if info.filename.startswith("torch/include/") and not info.is_dir():
        copy(torch_zip, info, os.path.join(inc_dir, info.filename[len("torch/include/"):]), 0o644)
        n += 1
print(f"libtorch.sh: extracted {n} header files", file=sys.stderr)

# basename -> (zip, member) for every shared library shipped by the wheels (torch's first).
sources = {}
for zf in [torch_zip] + [zipfile.ZipFile(w) for w in other_wheels]:
    for info in zf.infolist():
        parts = info.filename.split("/")
        if (not info.is_dir() and len(parts) >= 3 and parts[-2] == "lib"
                and parts[0] in ("torch", "nvidia") and ".so" in parts[-1]):
            sources.setdefault(parts[-1], (zf, info))

def needed(path):
    out = subprocess.run(["readelf", "-dW", path], check=True, capture_output=True, text=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]

queue, done, system = ["libtorch_cpu.so", "libc10.so"], set(), set()
while queue:
    name = queue.pop(0)
    if name in done:
        continue
    if name not in sources:
        sys.exit(f"libtorch.sh: ERROR: {name} is not in the wheels")
    zf, info = sources[name]
    dest = os.path.join(lib_dir, name)
    copy(zf, info, dest, 0o755)
    done.add(name)
    print(f"libtorch.sh:   lib/{name:<22} {info.file_size / 2**20:7.1f} MiB  from {os.path.basename(zf.filename)}",
          file=sys.stderr)
    for dep in needed(dest):
        if dep in sources:
            if dep not in done:
                queue.append(dep)
        else:
            system.add(dep)
print("libtorch.sh: system libraries needed: " + " ".join(sorted(system)), file=sys.stderr)
PY

LIB="$STAGE/lib"
# tch links -ltorch: give it an empty library (see the header).
gcc -shared -Wl,-soname,libtorch.so -o "$LIB/libtorch.so" -x c /dev/null
# torch-sys links -lgomp: resolve it to the wheel's libgomp rather than the compiler's.
gomp="$(cd "$LIB" && ls libgomp*.so* 2>/dev/null | head -n1 || true)"
[[ -n "$gomp" ]] || die "no libgomp in the libraries taken from the torch wheel"
[[ "$gomp" == libgomp.so ]] || ln -s "$gomp" "$LIB/libgomp.so"

# Every NEEDED entry must resolve: the bundled ones through the wheels' RPATH $ORIGIN (so even
# without LD_LIBRARY_PATH), the rest from the system.
missing="$(cd "$LIB" && for f in *.so*; do env -u LD_LIBRARY_PATH ldd "$f" | grep 'not found' || true; done)"
[[ -z "$missing" ]] || die "unresolved libraries: $missing"

# torch-sys compiles its C++ shim with -D_GLIBCXX_USE_CXX11_ABI=${LIBTORCH_CXX11_ABI:-1}.
# (Count, not `grep -q`: an early grep exit would make readelf die of SIGPIPE under pipefail.)
if [[ "$(readelf -sW --dyn-syms "$LIB/libc10.so" | grep -c '__cxx11')" -gt 0 ]]; then
  log "C++ ABI: cxx11 (matches torch-sys's default LIBTORCH_CXX11_ABI=1)"
else
  die "libc10.so does not use the cxx11 ABI; torch-sys would need LIBTORCH_CXX11_ABI=0"
fi

printf '%s+cpu\n' "$TORCH_VERSION" >"$STAGE/build-version"
{
  echo "CPU-only libtorch $TORCH_VERSION cut from package-index wheels by scripts/libtorch.sh ($MARKER_CONTENT)"
  for name in "$TORCH_WHEEL" "$CUDART_WHEEL" "$CUPTI_WHEEL"; do
    echo "$name sha256=$(sha256sum "$WHEELS/$name" | cut -d' ' -f1)"
  done
  echo "lib/libtorch.so is an empty stub; libtorch_cuda.so is deliberately absent."
} >"$STAGE/PROVENANCE.txt"
printf '%s' "$MARKER_CONTENT" >"$STAGE/.complete"

mv -T "$STAGE" "$DEST"
trap - EXIT

if [[ "${RECCOCKTAIL_KEEP_WHEELS:-0}" != 1 ]]; then
  # Keep a note of what was extracted; the folder itself is the cache from now on.
  printf '%s  %s (extracted to %s, wheel deleted)\n' "$(sha256sum "$WHEELS/$TORCH_WHEEL" | cut -d' ' -f1)" \
    "$TORCH_WHEEL" "$DEST" >"$WHEELS/$TORCH_WHEEL.extracted"
  rm -f "$WHEELS/$TORCH_WHEEL"
fi

log "done in $((SECONDS - T0)) s: $(du -sh "$DEST" | cut -f1) in $DEST"
printf '%s\n' "$DEST"

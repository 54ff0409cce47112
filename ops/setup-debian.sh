#!/usr/bin/env bash
# Installs what building and testing RiftKV needs on Debian: a C/C++ toolchain and libclang
# for the rocksdb crate, and the tools the fault and operations tests drive (iptables,
# iproute2, libfaketime, Prometheus, a font for the partition-test charts). Safe to run
# again; installs only what is missing.
set -euo pipefail

PACKAGES=(build-essential clang libclang-dev pkg-config curl ca-certificates iproute2 iptables
          faketime psmisc procps prometheus fonts-dejavu-core util-linux)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    echo "riftkv setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "riftkv setup: cargo not found; install a Rust toolchain (1.85 or newer, edition 2024) with rustup first" >&2
    exit 2
fi

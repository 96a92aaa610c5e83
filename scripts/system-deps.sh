#!/usr/bin/env bash
# Installs the system packages prewarm's tests and demo need, if missing (Debian, as root).
#   redis-server: broker and state store for the Celery warm tests
#   fuse3:        fusermount3 and libfuse3 for the gateway twin (PyPI mfusepy binds it)
#   strace:       trace capture (`prewarm record`) and its tests
#   clang, libbpf-dev: trace capture at a render's own speed (`prewarm record --with ebpf`): clang compiles
#                 the recorder's eBPF program, libbpf loads it; bpftool: its tests see what is loaded
#   chromium:     headless check that the HTML warm report renders with its plots, no console errors
#   gcc, python3-dev: `make setup` compiles the strace parser with mypyc
#   fio:          bench/warm.py replays each warm's reads with fio, the reference I/O engine
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v strace >/dev/null || need+=(strace)
command -v clang >/dev/null || need+=(clang)
[[ -e /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
command -v bpftool >/dev/null || need+=(bpftool)
command -v chromium >/dev/null || need+=(chromium)
command -v gcc >/dev/null || need+=(gcc)
command -v fio >/dev/null || need+=(fio)
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
if ((${#need[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "missing system packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
        exit 1
    fi
    echo "installing ${need[*]}" >&2
    # wait for another apt (unattended-upgrades, a parallel setup) rather than fail on its lock
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
if [[ ! -e /dev/fuse ]]; then
    echo "/dev/fuse is missing: the gateway twin needs FUSE (a container needs --device /dev/fuse)" >&2
    exit 1
fi

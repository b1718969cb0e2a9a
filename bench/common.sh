# Shared by bench/proxy.sh and bench/instructions.sh (sourced, not run):
# installs missing tools from Debian, builds the release fixture unless
# GATEWAY_BIN names one, and tracks started processes for cleanup.
# Sets: repo, target, nginx_bin, gateway_bin, pids.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}

# install_tools COMMAND:PACKAGE...: apt-installs each package whose command is missing.
install_tools() {
    local tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null || command -v "/usr/sbin/${tool%%:*}" >/dev/null && continue
        echo "installing ${tool#*:}" >&2
        apt-get install -y "${tool#*:}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${tool#*:}" >/dev/null; }
    done
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
}

# install_oha: oha (a Rust load generator with a fixed-rate mode) from crates.io, pinned, into the
# target directory, unless one is on PATH. Sets oha_bin.
install_oha() {
    oha_bin=$(command -v oha || echo "$target/tools/bin/oha")
    [ -x "$oha_bin" ] && return 0
    echo "installing oha 1.16.0 (cargo install, a few minutes)" >&2
    cargo install --quiet --locked oha --version 1.16.0 --root "$target/tools"
}

# build_fixture: the gateway fixture (examples/bench_gateway.rs), release build.
build_fixture() {
    gateway_bin=${GATEWAY_BIN:-}
    if [ -z "$gateway_bin" ]; then
        echo "building the release fixture (examples/bench_gateway.rs)" >&2
        (cd "$repo" && cargo build --release --quiet --example bench_gateway)
        gateway_bin=$target/release/examples/bench_gateway
    fi
}

# Processes to stop at exit: append PIDs to `pids`; `stop_all` kills and reaps them.
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

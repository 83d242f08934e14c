#!/usr/bin/env bash
# edge-agent offline installer: run from an unpacked bundle (tools/build_bundle.py), as root.
#
#   install.sh [--prefix /opt/edge-agent] [--root DIR] [--no-systemd] [--python PY]
#              [--health-timeout 60]                 install or upgrade to this bundle's version
#   install.sh --rollback [--prefix P] [--root DIR] [--no-systemd]   switch back to the previous
#   install.sh --uninstall [--prefix P] [--root DIR] [--no-systemd]  remove programs and units
#
# Owns: /opt/edge-agent/<version>/ (one venv per version, installed with pip --no-index
# --require-hashes from the bundle's wheels), the `current` and `previous` symlinks (switched
# atomically: ln -sfn on a temporary name, then mv -T), the unit files, the sysusers/tmpfiles
# snippets, /usr/local/bin/edge-agent, and /etc/edge-agent/agent.toml.example.
# Never touches /etc/edge-agent/*.toml, the credentials or /var/lib/edge-agent's contents.
# Upgrade with systemd: `edge-agent check` agent.toml and each running line's config with the
# new version before switching; after switching, restart the units that were running
# (edge-agent.service, edge-agent@LINE.service; a stopped one stays stopped) and wait until
# each is active and its GET /healthz answers 200; otherwise switch back, restart, exit 1.
# --root DIR puts every path under DIR (image builds, tests); the system user is then created
# in DIR/etc/passwd by `systemd-sysusers --root DIR`, when that is installed.
set -euo pipefail
umask 022
for var in $(compgen -e); do  # no pip settings from the environment: only the bundle counts
    case "$var" in PIP_*) unset "$var" ;; esac
done

PROG=install.sh
UNIT=edge-agent.service
SERVICE_USER=edge-agent
die() { echo "$PROG: error: $*" >&2; exit 1; }
say() { echo "$PROG: $*"; }

ACTION=install PREFIX=/opt/edge-agent ROOT='' SYSTEMD=1 PYTHON='' HEALTH_TIMEOUT=60
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
        --health-timeout) HEALTH_TIMEOUT=${2:?--health-timeout needs seconds}; shift 2 ;;
        --rollback) ACTION=rollback; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
case "$PREFIX" in /*) ;; *) die "--prefix: expected an absolute path, found '$PREFIX'" ;; esac
ROOT=${ROOT%/}
if [ -n "$ROOT" ]; then mkdir -p "$ROOT"; ROOT=$(cd "$ROOT" && pwd); fi
DEST="$ROOT$PREFIX"
ETC="$ROOT/etc/edge-agent"
STATE="$ROOT/var/lib/edge-agent"
UNITDIR="$ROOT/etc/systemd/system"
BUNDLE=$(cd "$(dirname "$0")" && pwd)
# EDGE_AGENT_SYSTEMCTL: another systemctl (tests drive the upgrade path with a stand-in)
SYSTEMCTL=${EDGE_AGENT_SYSTEMCTL:-systemctl}
systemctl() { command "$SYSTEMCTL" "$@"; }  # `command`: never this function itself
if [ "$SYSTEMD" = 1 ] && [ -z "${EDGE_AGENT_SYSTEMCTL:-}" ] && [ ! -d /run/systemd/system ]; then
    say "warning: systemd is not running here; acting as with --no-systemd (no unit restart, no health check)"
    SYSTEMD=0
fi

# --- the current/previous symlinks ---------------------------------------------------------
link_of() { readlink "$DEST/$1" 2>/dev/null || true; }
set_link() {  # set_link NAME VERSION: atomic replacement of $DEST/NAME
    ln -sfn "$2" "$DEST/.$1.tmp"
    mv -T "$DEST/.$1.tmp" "$DEST/$1"
}
switch_to() {  # switch_to NEW OLD: current -> NEW, previous -> OLD
    if [ -n "$2" ]; then set_link previous "$2"; fi
    set_link current "$1"
}

# --- units and health ---------------------------------------------------------------------
line_of() {  # line_of UNIT: LINE of edge-agent@LINE.service, nothing for edge-agent.service
    case "$1" in edge-agent@*.service) local line=${1#edge-agent@}; echo "${line%.service}" ;; esac
}
config_of() {  # config_of UNIT: the configuration file the unit runs
    local line
    line=$(line_of "$1")
    echo "$ETC/${line:-agent}.toml"
}
active_units() {  # the agent's units running now: edge-agent.service, edge-agent@LINE.service
    # "activating" counts: a unit waiting for READY=1, or for its next restart after a crash,
    # runs whatever `current` points at next, so it must be restarted and checked as well.
    case "$(systemctl is-active "$UNIT" 2>/dev/null || true)" in
        active|activating|reloading) echo "$UNIT" ;;
    esac
    systemctl list-units --plain --no-legend --state=active,activating,reloading \
        'edge-agent@*.service' 2>/dev/null | awk '$1 ~ /^edge-agent@.+\.service$/ { print $1 }' || true
}
health_url() {  # health_url VERSION CONFIG: its [api] /healthz, or nothing when the API is off
    local py="$DEST/$1/bin/python"
    "$py" - "$2" <<'EOF' 2>/dev/null || echo "http://127.0.0.1:8787/healthz"
import sys, tomllib
api = tomllib.load(open(sys.argv[1], "rb")).get("api", {})
if api.get("enabled", True):
    print(f"http://{api.get('host', '127.0.0.1')}:{api.get('port', 8787)}/healthz")
EOF
}
http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
    else
        "$DEST/current/bin/python" -c 'import sys, urllib.request as u
sys.exit(0 if u.urlopen(sys.argv[1], timeout=2).status == 200 else 1)' "$1" 2>/dev/null
    fi
}
healthy() {  # healthy VERSION UNIT...: restart the units, wait for each: active + /healthz 200
    local version=$1 unit deadline left
    shift
    declare -A url=()
    for unit in "$@"; do
        url[$unit]=$(health_url "$version" "$(config_of "$unit")")
        # --no-block: a Type=notify unit that never sends READY=1 would hold a blocking
        # restart until TimeoutStartSec (180 s), far past --health-timeout.
        systemctl restart --no-block "$unit" || return 1
    done
    deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
    while true; do
        left=()
        for unit in "$@"; do
            [ -n "${url[$unit]+set}" ] || continue
            if systemctl is-active --quiet "$unit" && { [ -z "${url[$unit]}" ] || http_ok "${url[$unit]}"; }; then
                say "$unit is active${url[$unit]:+ and ${url[$unit]} answers 200} (version $version)"
                unset "url[$unit]"
            else
                left+=("$unit")
            fi
        done
        [ "${#left[@]}" = 0 ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "not healthy within ${HEALTH_TIMEOUT}s (active, /healthz 200): ${left[*]}"
            return 1
        fi
        sleep 1
    done
}

# --- actions ---------------------------------------------------------------------------------
rollback() {
    local cur prev units=()
    cur=$(link_of current); prev=$(link_of previous)
    [ -n "$prev" ] || die "no previous version under $DEST to roll back to"
    [ -x "$DEST/$prev/bin/edge-agent" ] || die "previous version $DEST/$prev is missing or incomplete"
    if [ "$SYSTEMD" = 1 ]; then mapfile -t units < <(active_units); fi
    switch_to "$prev" "$cur"
    say "rolled back: current -> $prev (previous -> $cur)"
    if [ "${#units[@]}" -gt 0 ]; then
        healthy "$prev" "${units[@]}" || die "version $prev is not healthy either: journalctl -u 'edge-agent*' -n 100"
    fi
}

uninstall() {
    if [ "$SYSTEMD" = 1 ]; then systemctl disable --now "$UNIT" 2>/dev/null || true; fi
    local f
    for f in "$BUNDLE"/systemd/*.service "$BUNDLE"/systemd/*.timer; do
        [ -e "$f" ] && rm -f "$UNITDIR/$(basename "$f")"
    done
    rm -f "$ROOT/etc/sysusers.d/edge-agent.conf" "$ROOT/etc/tmpfiles.d/edge-agent.conf"
    [ "$(readlink "$ROOT/usr/local/bin/edge-agent" 2>/dev/null)" = "$PREFIX/current/bin/edge-agent" ] \
        && rm -f "$ROOT/usr/local/bin/edge-agent"
    rm -rf "$DEST"
    if [ "$SYSTEMD" = 1 ]; then systemctl daemon-reload; fi
    say "removed $DEST and the units; kept $ETC (configuration, credentials) and $STATE (buffer, certificates)"
    say "to remove those too: rm -rf $ETC $STATE; userdel $SERVICE_USER"
}

verify_bundle() {
    local bad
    [ -f "$BUNDLE/BUNDLE" ] || die "$BUNDLE: expected an unpacked edge-agent bundle (BUNDLE, SHA256SUMS), found no BUNDLE file"
    [ -f "$BUNDLE/SHA256SUMS" ] || die "$BUNDLE: expected an unpacked edge-agent bundle (BUNDLE, SHA256SUMS), found no SHA256SUMS file"
    if command -v sha256sum >/dev/null 2>&1; then
        bad=$(cd "$BUNDLE" || exit 1; sha256sum -c --quiet SHA256SUMS 2>&1 | grep -v '^sha256sum:' | tr '\n' ' ' || true)
        [ -z "$bad" ] || die "bundle $BUNDLE is damaged or altered, nothing was installed: $bad"
    fi
}

bundle_key() { sed -n "s/^$1=//p" "$BUNDLE/BUNDLE"; }

find_python() {  # a python3 of the bundle's major.minor with venv + ensurepip
    local want=$1 candidate
    if [ -n "$PYTHON" ]; then
        [ "$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ] \
            || die "--python $PYTHON: expected a Python $want interpreter (this bundle's), found none there"
    fi
    for candidate in ${PYTHON:+"$PYTHON"} "python$want" python3; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
            "$candidate" -c 'import venv, ensurepip' 2>/dev/null \
                || die "$candidate has no venv/ensurepip module (Debian/Ubuntu: apt-get install python3-venv)"
            command -v "$candidate"; return 0
        fi
    done
    die "this bundle is for Python $want: expected python$want on the PATH (or --python PATH), found none"
}

check_glibc() {  # the newest manylinux tag among the wheels sets the glibc the target needs
    local py=$1 need=$2
    [ -n "$need" ] || return 0
    "$py" - "$need" <<'EOF' || die "this bundle's wheels need glibc >= $need; rebuild it with --platform manylinux_2_XX_<arch> for this machine"
import platform, sys
lib, ver = platform.libc_ver()
have = tuple(int(p) for p in ver.split(".")[:2]) if lib == "glibc" and ver else (0, 0)
sys.exit(0 if have >= tuple(int(p) for p in sys.argv[1].split(".")) else 1)
EOF
}

credentials_dir() {  # credentials_dir DIR UNIT: a $CREDENTIALS_DIRECTORY from its LoadCredential=
    local dir=$1 file=$2 line name path instance
    instance=$(line_of "$2")
    if [ -n "$instance" ]; then file=edge-agent@.service; fi
    grep -h '^LoadCredential=' "$BUNDLE/systemd/$file" 2>/dev/null | while IFS= read -r line; do
        line=${line#LoadCredential=}; line=${line//%i/$instance}; name=${line%%:*}; path=${line#*:}
        [ -n "$name" ] && [ -e "$ROOT$path" ] && ln -sfn "$ROOT$path" "$dir/$name"
    done || true
}

install_version() {  # install_version VERSION PY: the venv of this bundle at $DEST/VERSION
    local version=$1 py=$2 target="$DEST/$1" sums
    sums=$(sha256sum "$BUNDLE/SHA256SUMS" 2>/dev/null | cut -d' ' -f1 || cksum "$BUNDLE/SHA256SUMS")
    if [ -f "$target/.bundle" ] && [ "$(cat "$target/.bundle")" = "$sums" ]; then
        say "version $version already installed in $target"; return 0
    fi
    if [ -e "$target" ]; then
        [ "$(link_of current)" != "$version" ] \
            || die "version $version is installed from a different bundle and is current; build a new version or roll back first"
        rm -rf "$target"
    fi
    say "installing version $version into $target"
    "$py" -m venv "$target"
    if ! PIP_CONFIG_FILE=/dev/null "$target/bin/python" -m pip install --quiet \
            --disable-pip-version-check --no-cache-dir --no-index \
            --find-links "$BUNDLE/wheels" --require-hashes -r "$BUNDLE/requirements.txt"; then
        rm -rf "$target"
        die "pip refused the bundle's wheels (see above: a hash mismatch means a wheel was altered); nothing was switched, current is still '$(link_of current)'"
    fi
    mkdir -p "$target/share/edge-agent"
    if [ -d "$BUNDLE/docs" ]; then cp -R "$BUNDLE/docs" "$target/docs"; fi
    cp -R "$BUNDLE/config" "$BUNDLE/models" "$BUNDLE/systemd" "$BUNDLE/BUNDLE" \
        "$BUNDLE/requirements.txt" "$BUNDLE/install.sh" "$target/share/edge-agent/"
    echo "$sums" > "$target/.bundle"
}

system_files() {
    local f name
    mkdir -p "$ETC" "$STATE" "$UNITDIR" "$ROOT/usr/local/bin"
    chmod 0750 "$ETC" "$STATE"
    cp "$BUNDLE/config/example-plant.toml" "$ETC/agent.toml.example"
    for f in "$BUNDLE"/systemd/*; do
        [ -f "$f" ] || continue
        name=$(basename "$f")
        case "$name" in
            *.sysusers.conf) mkdir -p "$ROOT/etc/sysusers.d"; cp "$f" "$ROOT/etc/sysusers.d/${name%.sysusers.conf}.conf" ;;
            *.tmpfiles.conf) mkdir -p "$ROOT/etc/tmpfiles.d"; cp "$f" "$ROOT/etc/tmpfiles.d/${name%.tmpfiles.conf}.conf" ;;
            *.service|*.timer|*.socket|*.path) cp "$f" "$UNITDIR/$name" ;;
        esac
    done
    ln -sfn "$PREFIX/current/bin/edge-agent" "$ROOT/usr/local/bin/edge-agent"
    if [ -n "$ROOT" ]; then
        root_user
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1 && [ -f /etc/sysusers.d/edge-agent.conf ]; then
        systemd-sysusers /etc/sysusers.d/edge-agent.conf
    elif ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/edge-agent --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    if command -v systemd-tmpfiles >/dev/null 2>&1 && [ -f /etc/tmpfiles.d/edge-agent.conf ]; then
        systemd-tmpfiles --create /etc/tmpfiles.d/edge-agent.conf
    fi
    chown "root:$SERVICE_USER" "$ETC"
    chown "$SERVICE_USER:$SERVICE_USER" "$STATE"
}

root_user() {  # --root: the system user in DIR's own passwd/group, owners by its numbers
    local ids
    if ! command -v systemd-sysusers >/dev/null 2>&1; then
        say "--root: systemd-sysusers not found, no user created in $ROOT"
        return 0
    fi
    systemd-sysusers --root "$ROOT" "$ROOT/etc/sysusers.d/edge-agent.conf"
    ids=$(awk -F: -v u="$SERVICE_USER" '$1 == u { print $3 ":" $4 }' "$ROOT/etc/passwd")
    [ -n "$ids" ] || die "systemd-sysusers did not create $SERVICE_USER in $ROOT/etc/passwd"
    if [ "$(id -u)" = 0 ]; then
        chown "0:${ids#*:}" "$ETC"
        chown "$ids" "$STATE"
    fi
    say "--root: user $SERVICE_USER ($ids) in $ROOT/etc/passwd; files under $ROOT"
}

precheck() {  # precheck VERSION UNIT...: the new version accepts each unit's configuration
    local version=$1 unit config creds status seen=' '
    shift
    for unit in "$@"; do
        config=$(config_of "$unit")
        case "$seen" in *" $config "*) continue ;; esac
        seen+="$config "
        [ -f "$config" ] || continue
        creds=$(mktemp -d)
        credentials_dir "$creds" "$unit"
        status=0
        CREDENTIALS_DIRECTORY=$creds "$DEST/$version/bin/edge-agent" check --config "$config" >/dev/null || status=$?
        rm -rf "$creds"
        [ "$status" = 0 ] || die "version $version rejects $config (exit $status, problems above); nothing was switched, current is still '$(link_of current)'"
    done
}

prune() {  # keep current and previous, remove older complete versions
    local dir cur prev
    cur=$(link_of current); prev=$(link_of previous)
    for dir in "$DEST"/*/; do
        dir=${dir%/}
        if [ -L "$dir" ] || [ ! -f "$dir/.bundle" ]; then continue; fi
        case "$(basename "$dir")" in "$cur"|"$prev") ;; *) say "removing old version $dir"; rm -rf "$dir" ;; esac
    done
}

install() {
    local version py cur units=()
    verify_bundle
    version=$(bundle_key version)
    py=$(find_python "$(bundle_key python)")
    check_glibc "$py" "$(bundle_key glibc)"
    mkdir -p "$DEST"
    install_version "$version" "$py"
    system_files
    if [ "$SYSTEMD" = 1 ]; then
        systemctl daemon-reload
        # Only what runs now is restarted: a unit an operator stopped stays stopped.
        mapfile -t units < <(active_units)
    fi
    # The new version must accept agent.toml and the configuration of every running line.
    precheck "$version" "$UNIT" "${units[@]}"
    cur=$(link_of current)
    if [ "$cur" = "$version" ]; then
        say "current is already $version"
    else
        switch_to "$version" "$cur"
        say "current -> $version${cur:+ (previous -> $cur)}"
    fi
    if [ "${#units[@]}" -gt 0 ] && [ "$cur" != "$version" ]; then
        if ! healthy "$version" "${units[@]}"; then
            if [ -n "$cur" ]; then
                switch_to "$cur" "$version"
                say "rolled back to $cur"
                healthy "$cur" "${units[@]}" || say "version $cur is not healthy either"
            fi
            die "version $version failed its health check and was rolled back to '${cur:-nothing}': journalctl -u 'edge-agent*' -n 100"
        fi
    elif [ ! -f "$ETC/agent.toml" ]; then
        say "next: cp $ETC/agent.toml.example $ETC/agent.toml, edit it, then check it with the credentials systemd will hand over:"
        say "  CREDENTIALS_DIRECTORY=$ETC edge-agent check --config $ETC/agent.toml"
        [ "$SYSTEMD" = 0 ] || say "then: systemctl enable --now $UNIT"
    fi
    prune
}

case "$ACTION" in
    install) install ;;
    rollback) rollback ;;
    uninstall) uninstall ;;
esac

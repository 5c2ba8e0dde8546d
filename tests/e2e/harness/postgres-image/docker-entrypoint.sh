#!/usr/bin/env bash
# Entrypoint of kubebots-e2e/postgres:15, a TEST STAND-IN for the official postgres image (see the
# Dockerfile next to this file). Same contract as the official docker-entrypoint.sh for what the
# manifests use: on an empty PGDATA it runs initdb (POSTGRES_USER with POSTGRES_PASSWORD, stored
# as scram-sha-256), creates POSTGRES_DB, runs /docker-entrypoint-initdb.d/*.sql|*.sh, allows
# `host all all all scram-sha-256`; on a non-empty PGDATA it only starts. The server replaces this
# script (exec): it is PID 1 and gets the stop signal itself.
set -Eeuo pipefail

log() { printf 'docker-entrypoint.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# file_env VAR [DEFAULT]: VAR, or the content of the file named by VAR_FILE (Secret volumes).
file_env() {
    local var=$1 def=${2:-} file_var="${1}_FILE" val
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set (they are exclusive)"
    fi
    val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!file_var:-}" ]; then
        val=$(<"${!file_var}")
    fi
    export "$var"="$val"
    unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi

: "${PGDATA:?PGDATA must be set}"
if [ "$(id -u)" = 0 ]; then
    # As root: own the data and socket directories, then run this script again as postgres.
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 00700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

mkdir -p "$PGDATA" || die "cannot create PGDATA $PGDATA as uid $(id -u) (is the volume writable?)"
chmod 00700 "$PGDATA" || die "cannot chmod 0700 PGDATA $PGDATA as uid $(id -u) (not its owner?)"

if [ -s "$PGDATA/PG_VERSION" ]; then
    log "PostgreSQL Database directory appears to contain a database; Skipping initialization"
    exec "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    die "the database is uninitialized and POSTGRES_PASSWORD is not set (or set" \
        "POSTGRES_HOST_AUTH_METHOD=trust, never outside tests)"
fi

log "initializing $PGDATA for user $POSTGRES_USER (uid $(id -u))"
# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    $POSTGRES_INITDB_ARGS
printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

# A server on the Unix socket only, for the set-up steps.
pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
psql_run=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
if [ "$POSTGRES_DB" != postgres ]; then
    "${psql_run[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
fi
for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
        *.sh) log "running $f"; . "$f" ;;
        *.sql) log "running $f"; "${psql_run[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
        *"/*") ;;
        *) log "ignoring $f" ;;
    esac
done
pg_ctl -D "$PGDATA" -m fast -w stop
log "PostgreSQL init process complete; ready for start up."
exec "$@"

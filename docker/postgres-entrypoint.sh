#!/bin/sh
# PostgreSQL entrypoint (docker/postgres.Dockerfile): on first start initialise PGDATA
# (superuser `postgres`, local socket only; role POSTGRES_USER with POSTGRES_PASSWORD, owner of
# database POSTGRES_DB; network logins by password, scram-sha-256), then run the server in the
# foreground with any extra arguments (`-c name=value`). The server listens only after the
# initialisation is done, so pg_isready means "ready to use".
set -eu
: "${PGDATA:?}" "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required (a Secret on Kubernetes)}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "initialising $PGDATA (role $POSTGRES_USER, database $POSTGRES_DB)"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --no-locale --no-instructions >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  quoted=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
  postgres --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN PASSWORD '$quoted';
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
  echo "initialised"
fi
# a volume's group permissions (fsGroup) must not make PostgreSQL refuse its data directory
chmod 700 "$PGDATA"
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"

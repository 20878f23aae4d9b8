#!/bin/sh
# docker compose: the postgres image runs this once, on an empty data volume (/docker-entrypoint-initdb.d),
# as the superuser. For a volume made before it existed: docker compose exec postgres sh /docker-entrypoint-initdb.d/axiswatch-roles.sh
set -eu
psql -X -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$POSTGRES_OWNER_PASSWORD" -v app_password="$POSTGRES_APP_PASSWORD" \
    -f /axiswatch/postgres-roles.sql

#!/usr/bin/env bash
# Start a PostgreSQL server from Debian's package on loopback for the test suite and print a
# SQLAlchemy URL for it. Installs the package when missing (needs root and apt).
#   usage: .ci/postgres.sh [--no-install]
set -euo pipefail
ROLE=modeldeck
PASSWORD=modeldeck
PORT=${MODELDECK_TEST_PG_PORT:-5432}

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [[ "${1:-}" == "--no-install" ]]; then
    echo "postgres.sh: PostgreSQL is not installed" >&2; exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$VERSION" main -p "$PORT" >&2
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start >&2
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$PORT" && break
  sleep 0.2
done
su postgres -c "psql -q -p $PORT -v ON_ERROR_STOP=1" >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB CREATEROLE PASSWORD '$PASSWORD';
  END IF;
END \$\$;
-- tests/test_roles.py creates the least-privilege roles (modeldeck db roles) and users in them
ALTER ROLE $ROLE CREATEROLE;
-- so a test database can be dropped WITH (FORCE) while autovacuum works in it
GRANT pg_signal_backend TO $ROLE;
SQL
echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/postgres"

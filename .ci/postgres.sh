#!/usr/bin/env bash
# Start a PostgreSQL server from Debian's package on loopback for the test suite and print a
# SQLAlchemy URL for it. Installs the package when missing (needs root and apt).
#   usage: .ci/postgres.sh [--no-install]
set -euo pipefail
ROLE=modeldeck
PASSWORD=modeldeck

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [[ "${1:-}" == "--no-install" ]]; then
    echo "postgres.sh: PostgreSQL is not installed" >&2; exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
# A cluster of its own for the tests. Its data directory is in memory (tmpfs) when there is room: a
# test run creates and drops about 160 databases, and on a journaling disk the server spent twice the
# CPU on it, mostly in the kernel (the PostgreSQL tests: 14-16 CPU-s of the server's on ext4, 7 on
# tmpfs). The data is scratch: after a reboot empties /dev/shm the cluster is made again.
CLUSTER=modeldeck-tests
MEMORY_DIR=/dev/shm/modeldeck-postgres
cluster() { pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c'; }
if cluster | grep -q . && [[ ! -d "$(cluster | awk '{print $6}')" ]]; then
  pg_dropcluster --stop "$VERSION" "$CLUSTER" >&2
fi
if ! cluster | grep -q .; then
  DATA=()
  if [[ -d /dev/shm ]] && (( $(df -Pk /dev/shm | awk 'NR == 2 {print $4}') > 2 * 1024 * 1024 )); then
    DATA=(-d "$MEMORY_DIR/$VERSION")
  fi
  pg_createcluster "$VERSION" "$CLUSTER" ${MODELDECK_TEST_PG_PORT:+-p "$MODELDECK_TEST_PG_PORT"} "${DATA[@]}" >&2
fi
if ! cluster | awk '$4 == "online"' | grep -q .; then
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start >&2
fi
PORT=$(cluster | awk '{print $3}')
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

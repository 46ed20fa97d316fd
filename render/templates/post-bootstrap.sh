#!/bin/sh
# {{.Header}}
#
# Patroni runs this once, on the node that initialises the cluster, with a
# superuser connection URL as $1. It creates the app's role and database
# and the health checker's role; it is idempotent, so running it again is
# harmless.
#
# Their passwords are read here, from Secrets Manager, and nowhere else on
# a PostgreSQL node: not in Patroni's nor in PostgreSQL's environment. They
# reach psql through its own environment and \getenv, never on a command
# line or in the server log.
set -eu

read_secret() {
	aws secretsmanager get-secret-value --region {{.Region}} --secret-id "$1" --query SecretString --output text
}
PGHA_APP_PASSWORD=$(read_secret {{.AppSecret}})
PGHA_HEALTH_PASSWORD=$(read_secret {{.HealthSecret}})
: "${PGHA_APP_PASSWORD:?}" "${PGHA_HEALTH_PASSWORD:?}"
export PGHA_APP_PASSWORD PGHA_HEALTH_PASSWORD

{{.Psql}} --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --dbname="$1" <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
\getenv app_password PGHA_APP_PASSWORD
\getenv health_password PGHA_HEALTH_PASSWORD

SELECT 'CREATE ROLE {{.AppUser}}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{.AppUser}}') \gexec
ALTER ROLE {{.AppUser}} WITH LOGIN PASSWORD :'app_password';
SELECT 'CREATE DATABASE {{.Database}} OWNER {{.AppUser}}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{{.Database}}') \gexec
REVOKE CONNECT, TEMPORARY ON DATABASE {{.Database}} FROM PUBLIC;

-- The health checker runs SELECT pg_is_in_recovery() and reads the
-- archive's status (healthcheck.ArchiveQuery) in postgres.
SELECT 'CREATE ROLE {{.HealthUser}}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{.HealthUser}}') \gexec
ALTER ROLE {{.HealthUser}} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'health_password';
GRANT CONNECT ON DATABASE postgres TO {{.HealthUser}};
-- The slots of reserved_connections: clients cannot lock the checker out.
GRANT pg_use_reserved_connections TO {{.HealthUser}};
-- The WAL waiting to be archived: this one function of pg_monitor's.
GRANT EXECUTE ON FUNCTION pg_ls_archive_statusdir() TO {{.HealthUser}};

-- The app keeps its table in a schema named after its role, the first
-- entry of the default search_path (see app/README.md, Grants).
\connect {{.Database}}
CREATE SCHEMA IF NOT EXISTS {{.AppUser}} AUTHORIZATION {{.AppUser}};
SQL

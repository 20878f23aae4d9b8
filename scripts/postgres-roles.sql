-- Least privilege (docs/consumer_db.md, "Database roles"): run by a superuser, connected to the application
-- database, with psql variables owner_password and app_password (and, optionally, owner and app: other role
-- names, e.g. for a test of its own). Idempotent.
--   axiswatch_owner  owns the database, its schema and every table: runs the migrations, nothing else
--   axiswatch_app    what the services connect as: reads and writes rows, creates nothing, owns nothing
-- Neither is a superuser or may create databases or roles.
\set ON_ERROR_STOP on
\if :{?owner}
\else
\set owner axiswatch_owner
\endif
\if :{?app}
\else
\set app axiswatch_app
\endif
SELECT format('CREATE ROLE %I LOGIN', :'owner') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner')
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'app') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app')
\gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'owner', :'owner_password')
\gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'app', :'app_password')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'owner')
\gexec
-- JIT off for both roles, as the services' own startup option has it: behind a pooler (PgBouncer), which
-- refuses startup options, this default is what keeps it off (docs/consumer_db.md, "Behind PgBouncer").
SELECT format('ALTER ROLE %I SET jit = off', r) FROM unnest(ARRAY[:'owner', :'app']) AS r
\gexec
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";
-- Tables made before the roles existed (a local state from an older version) pass to the owner.
SELECT format('ALTER %s public.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.relname, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND pg_get_userbyid(c.relowner) <> :'owner'
\gexec
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";
-- The API's audit is appended to, never changed (migration 0010 takes these back when it makes the table).
SELECT format('REVOKE UPDATE, DELETE, TRUNCATE ON public.api_audit FROM %I', :'app')
WHERE to_regclass('public.api_audit') IS NOT NULL
\gexec
-- So is the maintenance log (migration 0011 does the same).
SELECT format('REVOKE UPDATE, DELETE, TRUNCATE ON public.maintenance_log FROM %I', :'app')
WHERE to_regclass('public.maintenance_log') IS NOT NULL
\gexec
-- and what the migrations make from now on (e.g. 0009's notification_* tables and their id sequences)
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO :"app";

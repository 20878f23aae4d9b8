-- Least privilege (docs/consumer_db.md, "Database roles"): run by a superuser, connected to the application
-- database, with psql variables owner_password and app_password. Idempotent.
--   axiswatch_owner  owns the database, its schema and every table: runs the migrations, nothing else
--   axiswatch_app    what the services connect as: reads and writes rows, creates nothing, owns nothing
-- Neither is a superuser or may create databases or roles.
\set ON_ERROR_STOP on
SELECT 'CREATE ROLE axiswatch_owner LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'axiswatch_owner')
\gexec
SELECT 'CREATE ROLE axiswatch_app LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'axiswatch_app')
\gexec
SELECT format('ALTER ROLE axiswatch_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'owner_password')
\gexec
SELECT format('ALTER ROLE axiswatch_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'app_password')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO axiswatch_owner', current_database())
\gexec
ALTER SCHEMA public OWNER TO axiswatch_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO axiswatch_app;
-- Tables made before the roles existed (a local state from an older version) pass to the owner.
SELECT format('ALTER %s public.%I OWNER TO axiswatch_owner',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relowner <> 'axiswatch_owner'::regrole
\gexec
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO axiswatch_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO axiswatch_app;
-- and what the migrations make from now on
ALTER DEFAULT PRIVILEGES FOR ROLE axiswatch_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO axiswatch_app;
ALTER DEFAULT PRIVILEGES FOR ROLE axiswatch_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO axiswatch_app;

-- Migration: 002_audit_logs_rls.sql
-- Description: Row-level security that isolates tenants in public.audit_logs; the application role; create_tenant_schema() recovery entry point
-- Database: public schema (runs once)
--
-- Why not the seed's `USING (true)`: a policy whose expression is true for every row lets
-- every role that may read the table read every tenant's rows; it only switches RLS on.
-- Here a row is visible (and may be written) only when BOTH hold:
--   1. its tenant_schema is the request's tenant, app.current_tenant (set by the middleware;
--      unset or empty: nothing is visible), and
--   2. the current role may USE that schema: only that tenant's own role can, so a request
--      of tenant A that sets app.current_tenant to B still sees nothing of B.
-- {{app_role}} is the base role of every tenant role (tenant roles are its members): it owns
-- nothing and has no BYPASSRLS. Superusers bypass RLS; the role that runs this migration
-- (the engine, owner of the table) keeps full access through its own named policy, so
-- FORCE ROW LEVEL SECURITY binds any other owner the table might get.

-- UP: Apply migration

DO $tenancy$
BEGIN
    -- Roles belong to the server, not to a database: create the app role only once.
    IF to_regrole('{{app_role}}') IS NULL THEN
        EXECUTE 'CREATE ROLE ' || '{{app_role}}'
             || ' NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS';
    END IF;
END
$tenancy$;

GRANT USAGE ON SCHEMA public TO {{app_role}};
-- Audit rows are append-only for the application: no UPDATE, no DELETE.
GRANT SELECT, INSERT ON public.audit_logs TO {{app_role}};
GRANT USAGE ON SEQUENCE public.audit_logs_id_seq TO {{app_role}};

ALTER TABLE public.audit_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_logs FORCE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS audit_logs_tenant_isolation ON public.audit_logs;
CREATE POLICY audit_logs_tenant_isolation ON public.audit_logs
    AS PERMISSIVE FOR ALL TO PUBLIC
    USING (
        tenant_schema = NULLIF(current_setting('app.current_tenant', true), '')
        AND EXISTS (
            SELECT 1 FROM pg_catalog.pg_namespace n
            WHERE n.nspname = audit_logs.tenant_schema
              AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
        )
    );
COMMENT ON POLICY audit_logs_tenant_isolation ON public.audit_logs IS
    'A row is visible and writable only for its own tenant: app.current_tenant names it and '
    'the current role may use its schema (only the tenant role can).';

-- The engine (the role running migrations, owner of the table) sees and writes every row.
DROP POLICY IF EXISTS audit_logs_engine ON public.audit_logs;
CREATE POLICY audit_logs_engine ON public.audit_logs
    AS PERMISSIVE FOR ALL TO CURRENT_USER
    USING (true) WITH CHECK (true);

-- The seed's "Recreate Tenant" recovery SQL. Recreating a schema means replaying every tenant
-- migration file, creating its role and grants and recording the ledger: that is the
-- engine's job (tenancy.services.lifecycle.recreate_tenant), not something to duplicate in
-- PL/pgSQL. The function therefore says exactly what to run instead, and never half-works.
CREATE OR REPLACE FUNCTION public.create_tenant_schema(org_id text, name text)
RETURNS void
LANGUAGE plpgsql
AS $tenancy$
DECLARE
    registered_schema text;
    registered_name text;
BEGIN
    IF org_id IS NULL OR org_id !~ '^org_[A-Za-z0-9]+$' THEN
        RAISE EXCEPTION 'Invalid Auth0 organization id %: expected org_ followed by letters '
            'and digits', quote_literal(coalesce(org_id, 'NULL'))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT tr.schema_name, tr.organization_name INTO registered_schema, registered_name
      FROM public.tenant_registry tr WHERE tr.auth0_org_id = org_id;
    IF registered_schema IS NOT NULL THEN
        RAISE EXCEPTION 'Tenant % (%) is registered with schema %: recreate it with the engine',
            org_id, registered_name, registered_schema
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Run: python manage.py tenant_recreate %s', org_id),
                  DETAIL = 'A schema is rebuilt from the migration files on disk, with its role, '
                           'grants and ledger rows, by tenancy; SQL alone cannot read them.';
    END IF;
    RAISE EXCEPTION 'Tenant % is not registered: create it with the engine', org_id
        USING ERRCODE = 'feature_not_supported',
              HINT = format('Run: python manage.py tenant_create %s --name %s', org_id,
                            quote_literal(coalesce(name, org_id)));
END
$tenancy$;
COMMENT ON FUNCTION public.create_tenant_schema(text, text) IS
    'Recovery entry point of the seed guide: raises with the manage.py command to run '
    '(tenant_recreate / tenant_create).';

-- DOWN: Rollback migration (commented for safety)
/*
DROP FUNCTION IF EXISTS public.create_tenant_schema(text, text);
DROP POLICY IF EXISTS audit_logs_engine ON public.audit_logs;
DROP POLICY IF EXISTS audit_logs_tenant_isolation ON public.audit_logs;
ALTER TABLE public.audit_logs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.audit_logs DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.audit_logs FROM {{app_role}};
REVOKE ALL ON SEQUENCE public.audit_logs_id_seq FROM {{app_role}};
REVOKE USAGE ON SCHEMA public FROM {{app_role}};
*/

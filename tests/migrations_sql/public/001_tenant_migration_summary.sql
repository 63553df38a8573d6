-- Migration: 001_tenant_migration_summary.sql
-- Description: A view of each schema's migration state, for dashboards and psql
-- Database: public schema (runs once)

-- UP: Apply migration

CREATE OR REPLACE VIEW public.tenant_migration_summary AS
SELECT
    tm.tenant_schema,
    COUNT(*) AS migration_count,
    MAX(tm.migration_version) AS last_version,
    MAX(tm.applied_at) AS last_migration,
    tr.organization_name,
    tr.auth0_org_id,
    tr.status
FROM public.tenant_migrations tm
LEFT JOIN public.tenant_registry tr ON tr.schema_name = tm.tenant_schema
GROUP BY tm.tenant_schema, tr.organization_name, tr.auth0_org_id, tr.status;

COMMENT ON VIEW public.tenant_migration_summary IS
    'One row per migrated schema: how many migrations, the last one and when.';

-- DOWN: Rollback migration (commented for safety)
/*
DROP VIEW IF EXISTS public.tenant_migration_summary;
*/

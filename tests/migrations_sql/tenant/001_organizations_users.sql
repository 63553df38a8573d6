-- Migration: 001_organizations_users.sql
-- Description: The employer organization and its users
-- Scope: every tenant schema (search_path is the tenant schema, then public)

-- UP: Apply migration

CREATE TABLE organizations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    auth0_org_id VARCHAR(64) NOT NULL UNIQUE,
    name VARCHAR(255) NOT NULL,
    website VARCHAR(500),
    industry VARCHAR(100),
    size_range VARCHAR(20) CHECK (size_range IN ('1-10', '11-50', '51-200', '201-1000', '1000+')),
    settings JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    auth0_user_id VARCHAR(128) NOT NULL UNIQUE,
    email VARCHAR(320) NOT NULL,
    full_name VARCHAR(255) NOT NULL,
    role VARCHAR(32) NOT NULL DEFAULT 'recruiter'
        CHECK (role IN ('owner', 'admin', 'recruiter', 'hiring_manager', 'viewer')),
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    last_login_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE UNIQUE INDEX idx_users_org_email ON users (organization_id, lower(email));
CREATE INDEX idx_users_organization_id ON users (organization_id);

-- DOWN: Rollback migration (commented for safety)
/*
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS organizations;
*/

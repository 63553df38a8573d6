-- Migration: 002_job_postings.sql
-- Description: Departments and job postings

-- UP: Apply migration

CREATE TABLE departments (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (organization_id, name)
);

CREATE TABLE job_postings (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    department_id UUID REFERENCES departments(id) ON DELETE SET NULL,
    created_by UUID REFERENCES users(id) ON DELETE SET NULL,
    title VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    location VARCHAR(255),
    remote_policy VARCHAR(16) NOT NULL DEFAULT 'onsite'
        CHECK (remote_policy IN ('onsite', 'hybrid', 'remote')),
    employment_type VARCHAR(16) NOT NULL DEFAULT 'full_time'
        CHECK (employment_type IN ('full_time', 'part_time', 'contract', 'internship', 'temporary')),
    salary_min NUMERIC(12, 2),
    salary_max NUMERIC(12, 2),
    salary_currency CHAR(3),
    status VARCHAR(16) NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'open', 'paused', 'closed', 'archived')),
    published_at TIMESTAMPTZ,
    closes_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CHECK (salary_min IS NULL OR salary_max IS NULL OR salary_min <= salary_max)
);

CREATE INDEX idx_job_postings_org_status ON job_postings (organization_id, status);
CREATE INDEX idx_job_postings_department ON job_postings (department_id);
CREATE INDEX idx_job_postings_created_by ON job_postings (created_by);
CREATE INDEX idx_job_postings_published ON job_postings (published_at DESC) WHERE status = 'open';

-- DOWN: Rollback migration (commented for safety)
/*
DROP TABLE IF EXISTS job_postings;
DROP TABLE IF EXISTS departments;
*/

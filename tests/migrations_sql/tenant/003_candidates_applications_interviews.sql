-- Migration: 003_candidates_applications_interviews.sql
-- Description: Candidates, their applications to job postings, and interviews

-- UP: Apply migration

CREATE TABLE candidates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email VARCHAR(320) NOT NULL,
    full_name VARCHAR(255) NOT NULL,
    phone VARCHAR(32),
    resume_url VARCHAR(1000),
    linkedin_url VARCHAR(500),
    source VARCHAR(64),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE UNIQUE INDEX idx_candidates_email ON candidates (lower(email));

CREATE TABLE applications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    job_posting_id UUID NOT NULL REFERENCES job_postings(id) ON DELETE CASCADE,
    candidate_id UUID NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    stage VARCHAR(16) NOT NULL DEFAULT 'applied'
        CHECK (stage IN ('applied', 'screening', 'interview', 'offer', 'hired', 'rejected', 'withdrawn')),
    cover_letter TEXT,
    rating SMALLINT CHECK (rating BETWEEN 1 AND 5),
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (job_posting_id, candidate_id)
);
CREATE INDEX idx_applications_candidate ON applications (candidate_id);
CREATE INDEX idx_applications_job_stage ON applications (job_posting_id, stage);

CREATE TABLE interviews (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    application_id UUID NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    interviewer_id UUID REFERENCES users(id) ON DELETE SET NULL,
    kind VARCHAR(16) NOT NULL DEFAULT 'video'
        CHECK (kind IN ('phone', 'video', 'onsite', 'technical', 'panel')),
    scheduled_at TIMESTAMPTZ NOT NULL,
    duration_minutes INTEGER NOT NULL DEFAULT 60 CHECK (duration_minutes > 0),
    outcome VARCHAR(16) CHECK (outcome IN ('pending', 'pass', 'fail', 'no_show', 'cancelled')),
    notes TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_interviews_application ON interviews (application_id);
CREATE INDEX idx_interviews_interviewer_time ON interviews (interviewer_id, scheduled_at);

-- DOWN: Rollback migration (commented for safety)
/*
DROP TABLE IF EXISTS interviews;
DROP TABLE IF EXISTS applications;
DROP TABLE IF EXISTS candidates;
*/

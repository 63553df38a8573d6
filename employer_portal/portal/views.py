"""Pages served on a tenant's own domain, from its schema, under its role.

tenancy.middleware has switched the connection to the tenant's role before a view runs:
the queries below name no schema and filter on no tenant, yet they cannot reach another
tenant's tables (the role may use its own schema only) nor another tenant's shared rows
(row-level security on public.audit_logs).
"""

import logging

from django.db import ProgrammingError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from employer_portal.portal.models import JobPosting
from tenancy.models import AuditLog

logger = logging.getLogger(__name__)


def job_postings(request: HttpRequest) -> HttpResponse:
    postings = list(JobPosting.objects.all()[:200])
    try:
        # Deliberately unfiltered: RLS shows this tenant's rows only.
        activity = list(AuditLog.objects.order_by("-created_at", "-id")[:10])
    except ProgrammingError:  # public migration 002 (the app role's grants) not applied
        logger.warning("audit_logs is not readable by tenant roles; run migrate_tenants --public")
        activity = None
    return render(
        request,
        "portal/job_postings.html",
        {"tenant": request.tenant, "postings": postings, "activity": activity},
    )

"""Pages served on a tenant's own domain, from its schema."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from employer_portal.portal.models import JobPosting


def job_postings(request: HttpRequest) -> HttpResponse:
    postings = list(JobPosting.objects.all()[:200])
    return render(
        request, "portal/job_postings.html", {"tenant": request.tenant, "postings": postings}
    )

"""URLs served on a tenant's own domain, from that tenant's schema."""

from django.urls import path

from employer_portal.portal import views

urlpatterns = [
    path("", views.job_postings, name="job-postings"),
]

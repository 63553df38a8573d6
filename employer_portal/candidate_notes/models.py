"""Notes a recruiter keeps on a candidate: an ordinary Django model in a tenant app.

Its table lives in every tenant schema, made by its Django migrations, which the migration
engine compiles once and replays in each schema (tenancy/services/django_steps.py). The
author points to the shared ``auth_user`` in ``public``; the engine grants the tenants'
owner roles the ``REFERENCES`` that foreign key needs.
"""

from django.conf import settings
from django.db import models


class CandidateNote(models.Model):
    # The candidate's id in the tenant's SQL-made ``candidates`` table.
    candidate_id = models.UUIDField(db_index=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    body = models.TextField()
    # The body's first line, kept for lists (filled for older notes by migration 0002).
    summary = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.summary or self.body[:80]

"""Read models over a tenant's business tables.

The tables are created by migrations_sql/tenant/*.sql in every tenant schema, so these
models are unmanaged: Django never migrates them, it only queries them under the
tenant's search_path.
"""

from django.db import models


class Organization(models.Model):
    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=255)
    auth0_org_id = models.CharField(max_length=64)

    class Meta:
        managed = False
        db_table = "organizations"


class JobPosting(models.Model):
    id = models.UUIDField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.DO_NOTHING)
    title = models.CharField(max_length=255)
    location = models.CharField(max_length=255, null=True)
    status = models.CharField(max_length=16)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "job_postings"
        ordering = ["-created_at"]

"""The public tables: the tenant registry, the one migration ledger, audit and settings.

Their table and column names are the seed guide's contract: its SQL runs verbatim against
them. The guide's inserts name only some columns, so every other NOT NULL column carries a
default in the database itself (``db_default``), not only in Python.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now
from django_tenants.models import DomainMixin, TenantMixin

from tenancy.services.rollout_records import ACTIVE as ROLLOUT_ACTIVE

TAG_MAX_LENGTH = 64


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    ARCHIVED = "archived", "Archived"


class Tenant(TenantMixin):
    """One employer organization, with its own schema ``tenant_<org id, lower-cased>``."""

    organization_name = models.CharField(max_length=255)
    auth0_org_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=16,
        choices=TenantStatus.choices,
        default=TenantStatus.ACTIVE,
        db_default=TenantStatus.ACTIVE,
    )
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())
    # Labels (``enterprise``, ``eu``, ``beta``) that rollouts select tenants by
    # (docs/rollouts.md); the column defaults to '{}' so that SQL inserts need not name it.
    tags = ArrayField(models.CharField(max_length=TAG_MAX_LENGTH), default=list, blank=True)
    # With django-tenants' multi-type tenants (services/tenant_types.py): the tenant's type,
    # which names the apps its schema gets; empty without types, and for a tenant registered
    # before them (it has the first type). A project whose TENANT_MODEL is this one sets
    # MULTI_TYPE_DATABASE_FIELD = "tenant_type".
    tenant_type = models.CharField(max_length=100, null=True, blank=True)

    def get_tenant_type(self) -> str | None:
        """django-tenants' multi-type tenants: the tenant's type, which routes its requests
        (TENANT_TYPES[type]["URLCONF"]); a tenant registered before types has the first."""
        from tenancy.services import tenant_types

        return tenant_types.registered(self.tenant_type)

    # Schemas are created and dropped by tenancy.services.tenants, in one transaction with
    # their migrations, role and registry row; never as a side effect of Model.save().
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        db_table = "tenant_registry"
        ordering = ["created_at", "id"]
        # The admin's actions on tenants, each behind its own permission (Django creates
        # them, and again after a flush, like the model's add/change/delete/view).
        permissions = [
            ("suspend_tenant", "Can suspend a tenant"),
            ("archive_tenant", "Can archive a tenant"),
            ("reactivate_tenant", "Can reactivate a tenant"),
            ("drop_tenant", "Can drop a tenant (schema, data, role and registry row)"),
            ("recreate_tenant", "Can recreate a tenant's schema from the migration files"),
            (
                "accept_checksum_tenant",
                "Can accept a changed migration file's checksum for a tenant",
            ),
            ("fake_migration_tenant", "Can mark a pending migration file as applied for a tenant"),
            ("rollback_tenant", "Can roll back a tenant's schema to an earlier version"),
            ("move_tenant", "Can move a tenant to another Citus worker node"),
            (
                "rebalance_tenant",
                "Can start and stop the Citus rebalancer (moves tenants between nodes)",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "suspended", "archived"]),
                name="tenant_registry_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_name} ({self.schema_name})"


class RolloutState(models.TextChoices):
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    HALTED = "halted", "Halted"
    COMPLETED = "completed", "Completed"
    ABORTED = "aborted", "Aborted"


# A rollout in one of these states holds its scope: a second one is refused (the record's
# writer, services/rollout_records.py, owns the list; migration 0014 spells it out).
ACTIVE_ROLLOUT_STATES = list(ROLLOUT_ACTIVE)


class Rollout(models.Model):
    """A staged rollout (services/rollouts.py writes it): the stages with their schemas,
    each stage's state and outcome, and who started and approved it. Persisted so that
    ``migrate_tenants --resume`` continues one that halted, waits, or was killed."""

    policy = models.CharField(max_length=100)  # a TENANCY["ROLLOUTS"] name, or "ad hoc"
    scope = models.CharField(max_length=32, db_default="tenants")
    state = models.CharField(max_length=20, choices=RolloutState.choices, db_default="running")
    reason = models.TextField(null=True, blank=True)  # why it halted, waits or was aborted
    stages = models.JSONField(db_default=[])
    current_stage = models.IntegerField(db_default=0)
    options = models.JSONField(db_default={})
    started_by = models.CharField(max_length=150, db_default="system")
    approvals = models.JSONField(db_default=[])  # [{"stage": i, "actor": ..., "at": ...}]
    started_at = models.DateTimeField(db_default=Now())
    # The server process of the connection that drives it, and a heartbeat: a running
    # rollout whose process is gone (or whose heartbeat is stale) was killed.
    backend_pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tenant_rollouts"
        ordering = ["-started_at", "-id"]
        permissions = [
            ("start_rollout", "Can start a staged rollout"),
            ("approve_rollout", "Can approve a rollout's next stage"),
            ("resume_rollout", "Can resume a halted rollout"),
            ("abort_rollout", "Can abort a rollout"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["scope"],
                condition=models.Q(state__in=ACTIVE_ROLLOUT_STATES),
                name="tenant_rollouts_one_active_per_scope",
            ),
        ]

    def __str__(self) -> str:
        return f"rollout {self.pk} ({self.policy}, {self.state})"


class Domain(DomainMixin):
    """A tenant's host name. A project with its own ``TENANT_DOMAIN_MODEL`` swaps this
    model out (as ``AUTH_USER_MODEL`` swaps auth's User): its reverse accessor
    ``tenant.domains`` is the project's, and tenancy's table stays unused."""

    class Meta:
        db_table = "tenant_domains"
        swappable = "TENANT_DOMAIN_MODEL"


class TenantMigration(models.Model):
    """The ledger: one row per (schema, migration) applied, for public and every tenant."""

    tenant_schema = models.CharField(max_length=63)
    # A SQL file's number ("004"), or a Django tenant step's "app_label.name": each half may
    # be as long as django_migrations allows (255), so 32 would refuse
    # "contenttypes.0002_remove_content_type_name" (and many a real migration name).
    migration_version = models.CharField(max_length=511)
    migration_name = models.CharField(max_length=511)
    checksum = models.CharField(max_length=64, null=True, blank=True)
    rollback_sql = models.TextField(null=True, blank=True)
    # The UP text as it was applied: what the Migrations page diffs a drifted file against
    # (NULL for rows recorded before tenancy 0015, or by --fake/--baseline).
    applied_sql = models.TextField(null=True, blank=True)
    applied_at = models.DateTimeField(db_default=Now())
    execution_time_ms = models.IntegerField(null=True, blank=True)
    applied_by = models.CharField(max_length=150, null=True, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "tenant_migrations"
        ordering = ["tenant_schema", "migration_version"]
        # The admin shows the ledger per step: its Migrations page (admin_migrations.py).
        verbose_name = "migration"
        verbose_name_plural = "migrations"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_schema", "migration_version"],
                name="tenant_migrations_schema_version_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_schema}: {self.migration_name}"


class AuditLog(models.Model):
    tenant_schema = models.CharField(max_length=63, null=True, blank=True, db_index=True)
    action = models.CharField(max_length=64)
    actor = models.CharField(max_length=150, db_default="system")
    details = models.JSONField(default=dict, db_default={})
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "audit_logs"
        ordering = ["-created_at", "-id"]
        # The hourly tenant-creation limit counts recent rows of one action.
        indexes = [models.Index(fields=["action", "created_at"], name="audit_logs_action_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.tenant_schema or ''} by {self.actor}"


class SystemConfiguration(models.Model):
    config_key = models.CharField(max_length=255, unique=True)
    config_value = models.JSONField(db_default=None)
    description = models.TextField(null=True, blank=True)
    is_public = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "system_configurations"
        ordering = ["config_key"]

    def __str__(self) -> str:
        return self.config_key


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"
    INTERRUPTED = "interrupted", "Interrupted"


class MigrationRun(models.Model):
    """One invocation of the engine (a migrate, a rollback, a creation's migrations)."""

    kind = models.CharField(max_length=32, db_default="migrate")
    actor = models.CharField(max_length=150, db_default="system")
    status = models.CharField(max_length=16, choices=RunStatus.choices, db_default="running")
    options = models.JSONField(db_default={})
    total_schemas = models.IntegerField(db_default=0)
    done_schemas = models.IntegerField(db_default=0)
    failed_schemas = models.IntegerField(db_default=0)
    backend_pid = models.IntegerField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    started_at = models.DateTimeField(db_default=Now())
    # Touched every few seconds while the run runs: a stale one means its process died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tenant_migration_runs"
        ordering = ["-started_at", "-id"]
        # Who may start a run from the admin (the admin's actions check it).
        permissions = [("run_migrations", "Can run pending migrations")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.kind}, {self.status})"


class MigrationRunResult(models.Model):
    """What one run did to one schema: the outcome the ledger alone cannot show."""

    run = models.ForeignKey(MigrationRun, on_delete=models.CASCADE, related_name="results")
    tenant_schema = models.CharField(max_length=63, db_index=True)
    status = models.CharField(max_length=16)  # succeeded | failed
    versions = models.JSONField(db_default=[])
    error = models.TextField(null=True, blank=True)
    duration_ms = models.IntegerField(db_default=0)
    finished_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "tenant_migration_run_results"
        ordering = ["-finished_at", "-id"]
        indexes = [
            models.Index(fields=["tenant_schema", "-finished_at"], name="run_results_schema_idx")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_schema}: {self.status}"


class PoolState(models.TextChoices):
    READY = "ready", "Ready"
    # A claim found it unusable (drifted, or its catalog kept its pool name): it is
    # dropped by the next fill or drain, never handed out.
    BROKEN = "broken", "Broken"


class TenantPoolEntry(models.Model):
    """A schema of the warm pool (``tenancy/services/pool.py``): built ahead with every
    tenant migration (its ledger rows under its pool name), its roles, grants and owners;
    not a tenant, so not in ``tenant_registry``. A claim renames it to a new tenant's
    names and deletes this row in the creation's transaction."""

    schema_name = models.CharField(max_length=63, unique=True)
    state = models.CharField(
        max_length=16, choices=PoolState.choices, default=PoolState.READY, db_default="ready"
    )
    created_at = models.DateTimeField(db_default=Now())
    # With multi-type tenants, the type it was built as (a claim takes one of its own type);
    # empty without types.
    tenant_type = models.CharField(max_length=100, null=True, blank=True)

    class Meta:
        db_table = "tenant_pool"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=["ready", "broken"]),
                name="tenant_pool_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schema_name} ({self.state})"


def _configure() -> None:
    """The project's naming settings reach the engine, and a deletion through the
    project's own tenant model reaches tenancy (services/tenant_model.py). Run when the
    app registry loads this module, before any command or request."""
    from django.db.models.signals import post_delete, pre_save

    from tenancy import conf
    from tenancy.engine import names
    from tenancy.services.tenant_model import forget_deleted, refuse_template_clone

    names.configure(conf.naming())
    post_delete.connect(forget_deleted, dispatch_uid="tenancy.forget_deleted")
    pre_save.connect(refuse_template_clone, dispatch_uid="tenancy.refuse_template_clone")


_configure()

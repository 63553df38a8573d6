"""Tenant tags (``tenant_registry.tags``, a text array with a GIN index for the rollouts'
selections) and staged rollouts (``tenant_rollouts``, one active per scope). The tags
column defaults to '{}' in the database, so that the migration guide's inserts into
tenant_registry, which do not name it, keep working."""

import django.contrib.postgres.fields
from django.db import migrations, models
from django.db.models.functions import Now


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0013_ledger_step_names"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE tenant_registry ADD COLUMN tags varchar(64)[] NOT NULL "
                    "DEFAULT '{}'; "
                    "CREATE INDEX tenant_registry_tags_idx ON tenant_registry USING gin (tags)",
                    "DROP INDEX tenant_registry_tags_idx; "
                    "ALTER TABLE tenant_registry DROP COLUMN tags",
                ),
            ],
            state_operations=[
                migrations.AddField(
                    model_name="tenant",
                    name="tags",
                    field=django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=64),
                        blank=True,
                        default=list,
                        size=None,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Rollout",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("policy", models.CharField(max_length=100)),
                ("scope", models.CharField(db_default="tenants", max_length=32)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("running", "Running"),
                            ("awaiting_approval", "Awaiting approval"),
                            ("halted", "Halted"),
                            ("completed", "Completed"),
                            ("aborted", "Aborted"),
                        ],
                        db_default="running",
                        max_length=20,
                    ),
                ),
                ("reason", models.TextField(blank=True, null=True)),
                ("stages", models.JSONField(db_default=[])),
                ("current_stage", models.IntegerField(db_default=0)),
                ("options", models.JSONField(db_default={})),
                ("started_by", models.CharField(db_default="system", max_length=150)),
                ("approvals", models.JSONField(db_default=[])),
                ("started_at", models.DateTimeField(db_default=Now())),
                ("backend_pid", models.IntegerField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(db_default=Now())),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "tenant_rollouts",
                "ordering": ["-started_at", "-id"],
                "permissions": [
                    ("start_rollout", "Can start a staged rollout"),
                    ("approve_rollout", "Can approve a rollout's next stage"),
                    ("resume_rollout", "Can resume a halted rollout"),
                    ("abort_rollout", "Can abort a rollout"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(
                            ("state__in", ["running", "awaiting_approval", "halted"])
                        ),
                        fields=("scope",),
                        name="tenant_rollouts_one_active_per_scope",
                    )
                ],
            },
        ),
    ]

"""The warm pool's table: schemas built ahead of tenant creation (tenancy/services/pool.py).

One row per pool schema; a claim deletes its row in the creation's transaction, so a row
exists exactly while its schema is a pool schema and not a tenant.
"""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0008_tenant_recovery_permissions"),
    ]

    operations = [
        migrations.CreateModel(
            name="TenantPoolEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("schema_name", models.CharField(max_length=63, unique=True)),
                (
                    "state",
                    models.CharField(
                        choices=[("ready", "Ready"), ("broken", "Broken")],
                        db_default="ready",
                        default="ready",
                        max_length=16,
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            options={
                "db_table": "tenant_pool",
                "ordering": ["id"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("state__in", ["ready", "broken"])),
                        name="tenant_pool_state_valid",
                    )
                ],
            },
        ),
    ]

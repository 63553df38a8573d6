"""The ledger keeps the UP text each step was applied with (``applied_sql``), so that the
admin's Migrations page can show what changed in a drifted file. Adding a nullable column
without a default is a catalog-only change in PostgreSQL (no table rewrite)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0014_tenant_tags_and_rollouts"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="tenantmigration",
            options={
                "ordering": ["tenant_schema", "migration_version"],
                "verbose_name": "migration",
                "verbose_name_plural": "migrations",
            },
        ),
        migrations.AddField(
            model_name="tenantmigration",
            name="applied_sql",
            field=models.TextField(blank=True, null=True),
        ),
    ]

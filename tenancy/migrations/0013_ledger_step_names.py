"""The ledger's ``migration_version`` and ``migration_name`` hold a Django tenant step's
``app_label.name`` (each half up to 255 characters, as in ``django_migrations``): varchar(32)
refused ``contenttypes.0002_remove_content_type_name`` at the end of a tenant's creation.
Widening a varchar is a catalog-only change in PostgreSQL (no table rewrite)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0012_no_temporary_objects_for_tenants"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tenantmigration",
            name="migration_version",
            field=models.CharField(max_length=511),
        ),
        migrations.AlterField(
            model_name="tenantmigration",
            name="migration_name",
            field=models.CharField(max_length=511),
        ),
    ]

"""Existing tenant schemas move to their owner roles (see tenancy/services/ownership.py):
the schema and every object in it change owner; the web role's grants are renewed."""

from django.db import migrations


def adopt_existing_tenants(apps, schema_editor):
    from tenancy.services.ownership import adopt_all

    adopt_all(schema_editor.connection.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0004_audit_logs_action_index"),
    ]

    operations = [
        migrations.RunPython(adopt_existing_tenants, migrations.RunPython.noop),
    ]

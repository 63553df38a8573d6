"""Tenant roles may no longer create temporary objects (``REVOKE TEMPORARY ON DATABASE …
FROM PUBLIC``; see ``tenancy.engine.ownership.revoke_public_temp``): a temporary object a
tenant file made would outlive the file on the migration engine's connection."""

from django.db import migrations


def revoke_temporary(apps, schema_editor):
    from tenancy.engine.ownership import revoke_public_temp

    revoke_public_temp(schema_editor.connection.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0011_tenant_action_permissions"),
    ]

    operations = [
        migrations.RunPython(revoke_temporary, migrations.RunPython.noop),
    ]

"""Permissions for the admin's recovery actions on a tenant, one per verb.

Accept a checksum (drift), mark a pending file as applied (fake), roll back to a version:
rows of auth_permission on the Tenant content type, created here like 0007's lifecycle ones
(Django never deletes permissions it did not declare).
"""

from django.db import migrations

PERMISSIONS = [
    ("accept_checksum_tenant", "Can accept a changed migration file's checksum for a tenant"),
    ("fake_migration_tenant", "Can mark a pending migration file as applied for a tenant"),
    ("rollback_tenant", "Can roll back a tenant's schema to an earlier version"),
]


def add(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    ct, _ = ContentType.objects.using(schema_editor.connection.alias).get_or_create(
        app_label="tenancy", model="tenant"
    )
    for codename, name in PERMISSIONS:
        Permission.objects.using(schema_editor.connection.alias).get_or_create(
            content_type=ct, codename=codename, defaults={"name": name}
        )


def remove(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.using(schema_editor.connection.alias).filter(
        content_type__app_label="tenancy", codename__in=[c for c, _ in PERMISSIONS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0007_tenant_lifecycle_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add, remove)]

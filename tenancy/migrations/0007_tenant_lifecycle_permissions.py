"""Permissions for the admin's lifecycle actions on a tenant, one per verb.

Rows of auth_permission on the Tenant content type, created here (not in the model's Meta,
which belongs to the models' owners): Django never deletes permissions it did not declare.
"""

from django.db import migrations

PERMISSIONS = [
    ("suspend_tenant", "Can suspend a tenant"),
    ("archive_tenant", "Can archive a tenant"),
    ("reactivate_tenant", "Can reactivate a tenant"),
    ("drop_tenant", "Can drop a tenant (schema, data, role and registry row)"),
    ("recreate_tenant", "Can recreate a tenant's schema from the migration files"),
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
        ("tenancy", "0006_run_heartbeat"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add, remove)]

"""Permissions for the admin's placement actions on a Citus cluster, one per action.

Move a tenant to another worker node (``citus_schema_move``), start or stop Citus'
rebalancer: rows of auth_permission on the Tenant content type, created here like 0007's
and 0008's. Since 0011 the model declares them all (Tenant.Meta.permissions).
"""

from django.db import migrations

PERMISSIONS = [
    ("move_tenant", "Can move a tenant to another Citus worker node"),
    ("rebalance_tenant", "Can start and stop the Citus rebalancer (moves tenants between nodes)"),
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
        ("tenancy", "0009_tenant_pool"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add, remove)]

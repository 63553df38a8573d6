"""Each tenant's type, for django-tenants' multi-type tenants (``HAS_MULTI_TYPE_TENANTS``):
the plan gives a schema the Django migrations of its type's apps. A nullable column without
a default: a catalog-only change (no table rewrite)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0015_ledger_applied_sql"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="tenant_type",
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
    ]

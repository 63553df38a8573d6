"""The warm pool keeps entries of each tenant type (multi-type tenants): an entry records
the type it was built as, and a claim takes one of the new tenant's type. Nullable, no
default: a catalog-only change."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0016_tenant_type"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenantpoolentry",
            name="tenant_type",
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
    ]

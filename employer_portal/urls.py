"""URLs of the public schema: the admin, the control room of every tenant."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from tenancy.metrics import metrics

# SimpleAdminConfig (settings.py) leaves the discovery of admin modules to the URLconf.
admin.autodiscover()

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="tenancy-metrics"),  # Prometheus; token or staff
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

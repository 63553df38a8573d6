from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "employer_portal.portal"
    label = "portal"
    verbose_name = "Employer portal (tenant tables)"

from django.apps import AppConfig


class CandidateNotesConfig(AppConfig):
    name = "employer_portal.candidate_notes"
    label = "candidate_notes"
    verbose_name = "Notes on candidates (a Django tenant app)"
    default_auto_field = "django.db.models.BigAutoField"

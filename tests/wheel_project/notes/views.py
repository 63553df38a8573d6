from django.db import connection
from django.http import JsonResponse

from notes.models import Note


def note_list(request):
    """The notes of the request's tenant, as JSON."""
    notes = list(Note.objects.order_by("id").values_list("text", flat=True))
    return JsonResponse({"schema": connection.schema_name, "notes": notes})

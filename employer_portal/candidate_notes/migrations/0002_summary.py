"""A summary per note, filled for the notes already there (a data migration)."""

from django.db import migrations, models


def fill_summaries(apps, schema_editor):
    """Each existing note's summary is its body's first line (at most 200 characters)."""
    note_model = apps.get_model("candidate_notes", "CandidateNote")
    for note in note_model.objects.filter(summary=""):
        lines = note.body.strip().splitlines()
        note.summary = (lines[0] if lines else "")[:200]
        note.save(update_fields=["summary"])


class Migration(migrations.Migration):
    dependencies = [
        ("candidate_notes", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="candidatenote",
            name="summary",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.RunPython(fill_summaries, migrations.RunPython.noop),
    ]

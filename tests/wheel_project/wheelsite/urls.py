from django.urls import path
from notes.views import note_list

urlpatterns = [path("notes/", note_list)]

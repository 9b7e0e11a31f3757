"""The demo's two pages."""

from django.urls import path

from tui.demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/", views.enqueue, name="enqueue"),
]

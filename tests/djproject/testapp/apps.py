"""The app that holds the test tasks."""

from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "testapp"

"""The demo is itself a Django app, so its tasks and management command are found by Django."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "tui.demo"
    # Spelled out: the label names the app in migrations and must not follow a package move.
    label = "demo"
    verbose_name = "prodserver-tui demo"

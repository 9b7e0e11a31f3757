"""Tasks that use the ORM, so they run against whatever database their worker has."""

from __future__ import annotations

try:  # Django 6 ships tasks in core.
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport.
    from django_tasks import task  # type: ignore[no-redef,unused-ignore]


@task()
def make_order(token: str) -> int:
    from shop.models import Order

    return Order.objects.create(token=token).pk


@task(queue_name="later")
def send_receipt(token: str) -> str:
    """Enqueued on "later", which the worker does not serve: these stay READY for the stats."""
    return token

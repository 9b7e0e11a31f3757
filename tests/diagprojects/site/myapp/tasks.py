"""Tasks written the way that works: imported from django.tasks, enqueued with .enqueue()."""

try:  # Django 6
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task  # type: ignore[no-redef,unused-ignore]


@task()
def hello(n: int) -> int:
    return n


@task()
def boom(n: int) -> None:
    raise ValueError(f"boom {n}")


def greet() -> None:
    hello.enqueue(1)

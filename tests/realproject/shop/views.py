"""The web side: it enqueues into, and reads from, the database its settings name."""

from django.db import connection
from django.http import HttpResponse

from shop.models import Order
from shop.tasks import make_order


def home(request):
    return HttpResponse(f"{connection.vendor} {connection.settings_dict['NAME']}")


def order(request, token):
    make_order.enqueue(token)
    return HttpResponse(f"{connection.vendor} {connection.settings_dict['NAME']}")


def orders(request):
    return HttpResponse(" ".join(Order.objects.values_list("token", flat=True)))

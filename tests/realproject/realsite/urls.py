from django.urls import path
from shop import views

urlpatterns = [
    path("", views.home),
    path("order/<str:token>/", views.order),
    path("orders/", views.orders),
]

from django.db import models


class Order(models.Model):
    token = models.CharField(max_length=100, unique=True)
    made_at = models.DateTimeField(auto_now_add=True)

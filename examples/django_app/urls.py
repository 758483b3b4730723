from django.urls import path

from examples.django_app.views import place_order

urlpatterns = [path("orders", place_order)]

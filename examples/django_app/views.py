"""``POST /orders``: the order row and its job in one ``transaction.atomic()`` block, on Django's
own connection; when the block fails, neither exists."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from examples.django_app import jobs


class OrderFailed(Exception):
    """The order could not be completed: its transaction rolls back, job included."""


def orders_table() -> str:
    return connection.ops.quote_name(settings.JOBENGINE["schema"]) + ".example_orders"


@csrf_exempt  # an API endpoint for the example's clients; pages with forms keep the CSRF check
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    email = request.POST["email"]
    order_id = str(uuid.uuid4())
    client = jobs.client()  # opened (and the jobs schema migrated) on the first request
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {orders_table()} (id uuid PRIMARY KEY, email text)")
                cursor.execute(f"INSERT INTO {orders_table()} (id, email) VALUES (%s, %s)", [order_id, email])
            job = client.enqueue("log", {"level": "info", "message": f"order {order_id} placed"},
                                 conn=connection, tags=["orders"])
            if request.POST.get("fail"):
                raise OrderFailed("payment declined")
    except OrderFailed as exc:
        return JsonResponse({"error": str(exc), "order_id": order_id, "job_id": job.id}, status=402)
    return JsonResponse({"order_id": order_id, "job_id": job.id})

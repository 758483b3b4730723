"""A Django project and app using jobengine: settings, a view that enqueues inside
``transaction.atomic()`` on Django's own psycopg connection, and a management command.

Run it::

    pip install "jobengine[psycopg]" django
    export DATABASE_URL=postgresql://app@db/app DJANGO_SETTINGS_MODULE=examples.django_app.settings
    django-admin enqueue_welcome a@example.com          # the management command
    django-admin runserver                              # POST /orders email=a@example.com
    jobengine start                                     # a worker runs the jobs (same database)
"""

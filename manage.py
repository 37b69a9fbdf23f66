#!/usr/bin/env python
"""Django's command-line utility for OMS Guard."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    # A missing SECRET_KEY (or another setting the environment must provide) is a setup step
    # left out, not a bug, so it gets one line instead of a traceback.
    try:
        _ = settings.INSTALLED_APPS  # reading a setting loads the settings module
    except ImproperlyConfigured as error:
        sys.exit(f"manage.py: {error}")

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

"""Settings: ``base`` reads the environment; ``test`` only speeds the test suite up.

``DJANGO_SETTINGS_MODULE`` is ``bodybroker.settings.base`` everywhere but the test suite.
"""

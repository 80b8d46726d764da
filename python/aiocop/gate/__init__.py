"""The test-suite gate behind aiocop's pytest plugin (``aiocop.pytest_plugin``).

``policy`` says which blocking fails a test, ``collector`` gathers each
test's blocking slices from the monitor and sorts them into failing, allowed
and tolerated, ``messages`` writes what a user reads. None of it imports
pytest: the plugin module is the only place that meets pytest's hooks.
"""

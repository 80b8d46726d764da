"""The test-suite gate behind aiocop's pytest plugin (``aiocop.pytest_plugin``).

``policy`` says which blocking fails a test, ``collector`` gathers each
test's blocking slices from the monitor and sorts them into failing, allowed
and tolerated, ``messages`` writes what a user reads; none of these imports
pytest. ``plugin`` is the pytest plugin object that meets pytest's hooks,
imported only once ``--aiocop`` asks for it.
"""

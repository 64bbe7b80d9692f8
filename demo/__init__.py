"""The demo (``make demo`` runs ``demo/run_demo.py``); importable for the tests."""

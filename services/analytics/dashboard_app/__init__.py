"""The virality dashboard's parts: the query-API client, the access gate, Altair charts and the launch command.

services/analytics/dashboard.py is the Streamlit script that composes them; everything here is importable (and
testable) without a running Streamlit server.
"""

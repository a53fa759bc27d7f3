"""Monetate Session Stream → MySQL engine (no Airflow import)."""

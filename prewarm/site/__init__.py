"""This machine: its settings, where studio paths live here, and the one guard on what may be opened.

A job names studio paths; only the site decides which local paths they are and
which of them may be touched (`settings`, `guard`). `atomic` writes output files whole.
"""

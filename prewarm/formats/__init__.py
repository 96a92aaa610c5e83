"""Readers of the files' own structure: texture tile tables, EXR offset tables, scene dependencies."""

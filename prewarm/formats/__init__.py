"""Readers of the files' own structure: texture tile tables, EXR offset tables, scene dependencies.

Scene files (issue 15): `usd` (usd-core, the extra `scenes`) and `blend`
(blender-asset-tracer) list what a scene uses, per frame; `scenes.SceneReader` runs them
in a child process each (`child`), bounded in time, and hands `prewarm.plan.scenes` plain
values with studio paths.
"""

"""The paths a job takes through prewarm, used by the CLI, the service and the watch folders alike.

`planning` plans a job on this site (manifest, file system, traces -> plan);
`warming` checks a plan and starts its warms.
"""

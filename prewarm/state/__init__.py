"""Warm state in Redis, shared by the workers, the CLI and the service.

`keys` names every key (one schema), `client` connects, `jobs` keeps a warm job and
its batches, `dispatch` feeds each gateway's queue a bounded window, `dedupe`
remembers what each gateway holds, `throttle` shares one rate per gateway, and
`runner` is what a worker and a submitter do with them.
"""

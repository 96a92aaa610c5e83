"""Access traces of earlier renders: parsers (pure), trace files, the trace store, `prewarm record`.

`strace` and `jsonl` turn lines into `Access` records and do no IO; `files` finds,
opens and tells trace files apart by content; `store` files them per show/shot/job;
`record` runs a render under strace and files what it read.

`make setup` compiles `strace` with mypyc (about 4x faster: see the README); `prewarm`
runs the source instead of a build older than it.
"""

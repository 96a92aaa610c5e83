"""Reading a plan's ranges through the gateway mount: the part that is the same everywhere.

Result values (`results`, `job`), batches (`batches`), the read loop (`loop`), the
reader (`reader`), the rate cap (`throttle`), the time series (`timeline`) and the
in-process runner (`embedded`). Redis and Celery are one layer up, in `prewarm.state`.
"""

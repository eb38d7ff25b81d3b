"""``kit serve``: exported models over the Open Inference Protocol (KServe v2 REST), with
dynamic batching, Prometheus metrics and a page to draw digits on.

Built on :mod:`kit.runtime` (which never imports this package) with Starlette on uvicorn.
"""

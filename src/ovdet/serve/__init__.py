"""`ovdet serve`: detection, recognition, classification and segmentation over HTTP.

Layers, imported one way: `limits` and `inputs` (request validation, no models) <- `zoo` (the
models served, loaded once) and `jobs` (bounded inference queue) <- `app` (the FastAPI app, the
JSON API and the web page). FastAPI and uvicorn are the `[serve]` extra.
"""

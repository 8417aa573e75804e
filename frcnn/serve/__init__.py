"""The detection service: the scripts' models and options behind an HTTP API (FastAPI on uvicorn, or Ray Serve)."""

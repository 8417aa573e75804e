"""The HTTP API: FastAPI routes over the detection service and the video jobs.

Every error is `{"error": "<one line>"}` with its status code. The app is the same under uvicorn and Ray Serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import Annotated, Callable, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from frcnn.core.log import log
from frcnn.serve.detection import DetectionService, DetectRequest, Picture, upload_name
from frcnn.serve.errors import ServiceError
from frcnn.serve.jobs import FINISHED, STATES, JobRunner
from frcnn.serve.limits import BodyLimit, RequestMetrics, key_matches
from frcnn.serve.metrics import Metrics
from frcnn.serve.settings import ServeSettings
from frcnn.serve.sources import allowed_source, read_allowed
from frcnn.serve.streams import MJPEG_BOUNDARY, job_events, preview_frames

PICTURE_TYPES = ("image/", "application/octet-stream")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
DISCONNECT_POLL_S = 0.2
JOBS_LISTED, MAX_JOBS_LISTED = 100, 1000  # GET /v1/jobs' page: by default, at most
_MULTIPART_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}
_JOB_BODY = {"requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary", "description": "the clip (or give `source`)"},
    "source": {"type": "string", "description": "a stream URL or server path under --allow-sources"},
    "model": {"type": "string", "enum": ["v1", "v2", "both"]},
    "track": {"type": "boolean"}, "count_line": {"type": "array", "items": {"type": "string"}},
    "zone": {"type": "array", "items": {"type": "string"}}, "detect_every": {"type": "integer"},
    "meters_per_pixel": {"type": "number"}, "heatmap": {"type": "boolean"},
}}}}}}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(service: DetectionService, runner: JobRunner | None, settings: ServeSettings,
               metrics: Metrics, on_load_error: Callable[[str], None] = lambda message: None,
               load: Callable[[DetectionService], None] | None = None) -> FastAPI:
    """The API over a service whose models load in the background (/readyz says when they are ready):
    `load(service)` loads them (blocking; default: in this process) and attaches them; `on_load_error` hears why
    they could not."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.get_running_loop().create_task(_load(service, on_load_error, load))
        if runner is not None:
            await runner.start()
        yield
        loading.cancel()
        if runner is not None:
            await runner.stop()
        await service.stop()

    app = FastAPI(title="Faster R-CNN v1 / v2 detection", lifespan=lifespan,
                  description="Detect objects in pictures and videos with torchvision's Faster R-CNN ResNet50 FPN "
                              "v1 and v2: the same answers as detect_image.py --json and detect_video.py.")
    _errors(app)

    def check_key(request: Request) -> None:
        if settings.api_key and not key_matches(request.headers, settings.api_key):
            raise ServiceError(401, "this server needs an API key: send Authorization: Bearer KEY or X-API-Key: KEY",
                               {"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The process is alive (models may still be loading)."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """200 once every model has loaded and run once, naming them; 503 until then."""
        if service.ready:
            return JSONResponse({"ready": True, "models": list(service.predictors)})
        why = f"the models could not load: {service.load_error}" if service.load_error else "the models are loading"
        return error_response(503, why, {"Retry-After": "5"})

    @app.get("/metrics", tags=["health"])
    def prometheus() -> Response:
        """Prometheus' text format: requests, latencies, queue depth, inference times, batch sizes, jobs."""
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    api = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @api.get("/models", tags=["pictures"])
    def models() -> dict:
        """Each model's name, classes, runtime, precision, size, proposals and weights; what a request may send."""
        return {"default_model": service.default_model, "threshold": service.detect.threshold,
                "models": service.describe(),
                "limits": {"max_files": settings.max_files, "max_upload_mb": settings.max_upload_mb,
                           "max_video_mb": settings.max_video_mb, "max_megapixels": settings.max_pixels / 1e6,
                           "queue_size": settings.queue_size, "timeout_s": settings.timeout_s},
                "sources_allowed": bool(settings.allow_sources)}

    @api.post("/detect", tags=["pictures"], openapi_extra=_MULTIPART_BODY,
              responses={200: {"content": {"image/jpeg": {}}}})
    async def detect(request: Request,
                     model: Literal["v1", "v2", "both"] | None = None,
                     threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
                     classes: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
                     max_det: Annotated[int | None, Query(ge=1)] = None,
                     annotate: Literal["none", "jpeg"] = "none",
                     source: str | None = None) -> Response:
        """Pictures as multipart `file` fields (repeated), one picture as the raw body, or `source` (a URL or
        server path the server allows): for each, the record `detect_image.py --json` writes, in the order sent;
        with `annotate=jpeg` and one picture, the drawn JPEG."""
        pictures = await _pictures(request, source)
        asked = DetectRequest(model=model, threshold=threshold, max_det=max_det,
                              classes=tuple(name.strip() for value in classes for name in value.split(",")
                                            if name.strip()))
        if annotate == "jpeg":
            if len(pictures) != 1:
                raise ServiceError(422, f"annotate=jpeg draws one picture; this request sent {len(pictures)}")
            drawn = await _unless_gone(request, service.drawn(pictures[0], asked))
            return Response(drawn, media_type="image/jpeg")
        return JSONResponse(await _unless_gone(request, service.records(pictures, asked)))

    async def _pictures(request: Request, source: str | None) -> list[Picture]:
        if source:
            data = await asyncio.to_thread(read_allowed, source, settings.allow_sources)
            return [Picture(upload_name(source, 0), data)]
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_files=settings.max_files, max_fields=32)
            files = [value for value in form.getlist("file") if isinstance(value, UploadFile)]
            if not files:
                raise ServiceError(422, "no picture: send each as a multipart field named 'file'")
            return [Picture(upload_name(f.filename, i), await f.read()) for i, f in enumerate(files)]
        if kind.startswith(PICTURE_TYPES) or not kind:
            data = await request.body()
            if not data:
                raise ServiceError(422, "no picture: send it as the body, or as multipart fields named 'file'")
            return [Picture("picture", data)]
        raise ServiceError(415, f"a {kind.split(';')[0]} body is no picture: send multipart 'file' fields or one "
                                f"picture as the body")

    if runner is not None:
        _job_routes(api, runner, settings)
    app.include_router(api)
    app.add_middleware(BodyLimit, limit_for=lambda method, path: (
        settings.max_video_bytes if method == "POST" and path.rstrip("/") == "/v1/jobs"
        else settings.max_upload_bytes))
    app.add_middleware(RequestMetrics, metrics=metrics)
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Retry-After", "Location"])
    from frcnn.serve.clients import mount_clients

    mount_clients(app, service, settings, check_key)
    return app


async def _load(service: DetectionService, on_load_error: Callable[[str], None],
                load: Callable[[DetectionService], None] | None) -> None:
    try:
        await asyncio.to_thread(load or DetectionService.load, service)
    except Exception as error:  # said by /readyz; the command stops the server
        if service.load_error is None:
            service.load_error = str(error).splitlines()[0] if str(error) else type(error).__name__
            log.exception("the models could not load")
        on_load_error(service.load_error)
        return
    if load is None:
        service.start()
    log.info(f"ready: {', '.join(service.predictors)}")


async def _unless_gone(request: Request, work):
    """The work's result; if the client disconnects first the work is cancelled (its pictures leave the queue)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not done and await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ServiceError(499, "the client went away")
    return task.result()


def _job_routes(api: APIRouter, runner: JobRunner, settings: ServeSettings) -> None:

    @api.post("/jobs", tags=["video jobs"], status_code=202, openapi_extra=_JOB_BODY)
    async def create_job(request: Request) -> JSONResponse:
        """A clip as multipart `file` (or `source`: a stream URL or server path the server allows), with
        detect_video.py's options as form fields (track, count_line, zone, detect_every, meters_per_pixel, ...)."""
        if not request.headers.get("content-type", "").startswith(FORM_TYPES):
            raise ServiceError(415, "send the clip and its options as multipart/form-data (or a source and the "
                                    "options as a form)")
        form = await request.form(max_files=1, max_fields=64)
        fields: dict[str, list[str]] = {}
        upload = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "file":
                    raise ServiceError(422, f"'{key}' is a file; the clip goes in the field 'file'")
                upload = value
            elif key not in ("model", "source"):
                fields.setdefault(key, []).append(value)
        source = form.get("source")
        if (upload is None) == (not source):
            raise ServiceError(422, "give the clip as the field 'file', or a 'source' the server allows (not both)")
        job_id, inputs = await asyncio.to_thread(runner.new_job)
        try:
            if upload is not None:
                source = str(inputs / upload_name(upload.filename or "clip.mp4", 0))
                with open(source, "wb") as handle:
                    await asyncio.to_thread(shutil.copyfileobj, upload.file, handle)
            elif str(source).strip().isdigit():
                raise ServiceError(403, "a camera on the server is not a source a request may name")
            else:
                source = allowed_source(str(source), settings.allow_sources)
        except BaseException:
            shutil.rmtree(inputs.parent, ignore_errors=True)
            raise
        job = await asyncio.to_thread(runner.submit, job_id, str(source), fields, form.get("model"))
        return JSONResponse(job, status_code=202, headers={"Location": job["links"]["self"]})

    @api.get("/jobs", tags=["video jobs"])
    def list_jobs(response: Response,
                  limit: Annotated[int, Query(ge=1, le=MAX_JOBS_LISTED)] = JOBS_LISTED,
                  state: Annotated[list[Literal[STATES]], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
                  before: str | None = None) -> list[dict]:
        """The newest jobs first, `limit` of them (in these `state`s if given); the next page, if there is one, is
        the `Link` header's `rel="next"` (`before` the last job of this one)."""
        jobs = runner.listed(state or STATES, limit + 1, before)  # one more says whether a next page has any
        if len(jobs) > limit:
            jobs = jobs[:limit]
            query = urlencode({"limit": limit, "state": state, "before": jobs[-1]["id"]}, doseq=True)
            response.headers["Link"] = f'</v1/jobs?{query}>; rel="next"'
        return jobs

    @api.get("/jobs/{job_id}", tags=["video jobs"])
    def get_job(job_id: str) -> dict:
        """The job's state (queued, running, done, failed, cancelled), frames done and total, frames/s."""
        return runner.describe(job_id)

    @api.delete("/jobs/{job_id}", tags=["video jobs"])
    def delete_job(job_id: str) -> dict:
        """A queued or running job is cancelled (the video so far is kept, as Ctrl-C keeps it); a finished one
        is deleted with its files."""
        if runner.describe(job_id)["state"] in FINISHED:
            runner.remove(job_id)
            return {"id": job_id, "deleted": True}
        return runner.cancel(job_id)

    @api.get("/jobs/{job_id}/events", tags=["video jobs"])
    def events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: `progress`, each `analytics` event as the events file writes it, and `state`;
        resumable with Last-Event-ID."""
        runner.describe(job_id)
        after = request.headers.get("last-event-id", "0")
        return StreamingResponse(job_events(runner.folder(job_id), lambda: runner.describe(job_id),
                                            int(after) if after.isdigit() else 0),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @api.get("/jobs/{job_id}/files", tags=["video jobs"])
    def files(job_id: str) -> list[dict]:
        """The job's output files: the drawn H.264 video, its records, analytics, crops."""
        return runner.files(job_id)

    @api.get("/jobs/{job_id}/files/{name:path}", tags=["video jobs"])
    def file(job_id: str, name: str) -> FileResponse:
        """One output file (Range requests work, so a browser can seek in the video)."""
        return FileResponse(runner.file(job_id, name))

    @api.get("/jobs/{job_id}/preview.mjpeg", tags=["video jobs"])
    def preview(job_id: str) -> StreamingResponse:
        """The job's drawn frames as they come (MJPEG), until it ends."""
        runner.describe(job_id)
        return StreamingResponse(
            preview_frames(runner.folder(job_id), lambda: runner.describe(job_id)["state"] in FINISHED),
            media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")


def _errors(app: FastAPI) -> None:
    """Every error as {"error": one line}, with its status."""

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, error: ServiceError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return error_response(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(error).__name__}")

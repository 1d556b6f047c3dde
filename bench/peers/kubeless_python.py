"""Kubeless' Python runtime request path, reproduced for the benchmark.

A small reimplementation of the archived Kubeless runtime's `_kubeless.py`
(the `stable/python` image), written for this harness: bottle on cherrypy's
WSGI server with 10 threads, an Apache access log on stdout through
`wsgi-request-logger`, Prometheus counters and a histogram per method, and,
for every request, a new process from a `forkserver` multiprocessing context
(the user's module preloaded in the fork server) that runs the handler and
sends its result back through a `multiprocessing.Queue`, so that a handler
running past `FUNC_TIMEOUT` can be terminated with a 408.

Differences, all forced by running on today's Python 3.11 without Docker:
Kubeless pinned bottle 0.12.13 and cherrypy 8.9.1, which do not import on
Python 3.11, so this runs on bottle 0.12.x and cherrypy 18 through bottle's
`cheroot` adapter (cheroot *is* cherrypy's former `wsgiserver`); the code
directory comes from `KUBELESS_DIR` instead of the fixed `/kubeless`.

Environment: MOD_NAME, FUNC_HANDLER, FUNC_PORT, FUNC_TIMEOUT, KUBELESS_DIR.
"""

import importlib
import io
import logging
import os
import queue
import sys

import bottle
import prometheus_client as prom

# Like Kubeless: the user's module is imported once at start (and again by
# the fork server's preload), from the code directory on sys.path.
sys.path.append(os.environ.get("KUBELESS_DIR", "/kubeless"))
user_module = importlib.import_module(os.environ["MOD_NAME"])
func = getattr(user_module, os.environ["FUNC_HANDLER"])
port = int(os.environ.get("FUNC_PORT", "8080"))
timeout = float(os.environ.get("FUNC_TIMEOUT", "180"))
bottle.BaseRequest.MEMFILE_MAX = 100 * 1024 * 1024

app = bottle.app()
context = {
    "function-name": func.__name__,
    "timeout": timeout,
    "runtime": os.environ.get("FUNC_RUNTIME"),
    "memory-limit": os.environ.get("FUNC_MEMORY_LIMIT"),
}


class PicklableRequest(bottle.BaseRequest):
    """A bottle request that survives pickling into the child process:
    unpicklable environ entries (streams, the app, the route) are dropped
    and the body is kept in memory."""

    def __init__(self, body, environ):
        super().__init__(environ)
        self.environ["bottle.request.body"] = io.BytesIO(body)

    def __getstate__(self):
        state = dict(self.environ)
        for key in ("wsgi.errors", "wsgi.input", "bottle.app", "bottle.route", "route.handle"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.environ = state


def run_in_child(results, event, ctx):
    try:
        results.put(func(event, ctx))
    except Exception as e:  # sent back and re-raised by the parent
        results.put(e)


@app.get("/healthz")
def healthz():
    return "OK"


@app.get("/metrics")
def metrics():
    bottle.response.content_type = prom.CONTENT_TYPE_LATEST
    return prom.generate_latest(prom.REGISTRY)


@app.route("/<:re:.*>", method=["GET", "POST", "PATCH", "DELETE"])
def call():
    req = bottle.request
    body = req.body.read()
    # Copied before any header is read: bottle caches a header view of the
    # live environ, which cannot be pickled.
    picklable = PicklableRequest(body, req.environ.copy())
    data = body
    if req.get_header("content-type") == "application/json":
        data = req.json
    event = {
        "data": data,
        "event-id": req.get_header("event-id"),
        "event-type": req.get_header("event-type"),
        "event-time": req.get_header("event-time"),
        "event-namespace": req.get_header("event-namespace"),
        "extensions": {"request": picklable},
    }
    method = req.method
    calls.labels(method).inc()
    with failures.labels(method).count_exceptions():
        with duration.labels(method).time():
            results = mp_context.Queue()
            child = mp_context.Process(target=run_in_child, args=(results, event, context))
            child.start()
            try:
                result = results.get(block=True, timeout=timeout)
            except queue.Empty:
                child.terminate()
                child.join()
                return bottle.HTTPError(408, "Timeout while processing the function")
            child.join()
            if isinstance(result, Exception) and not isinstance(result, bottle.HTTPResponse):
                logging.error("Function returned an exception: %s", result)
                raise result
            return result


def preload():
    """Started once so the fork server exists before the first request."""


if __name__ == "__main__":
    import multiprocessing

    import requestlogger

    mp_context = multiprocessing.get_context("forkserver")
    mp_context.set_forkserver_preload([os.path.splitext(os.path.basename(__file__))[0]])
    starter = mp_context.Process(target=preload)
    starter.start()
    starter.join()

    duration = prom.Histogram("function_duration_seconds", "Duration of user function in seconds", ["method"])
    calls = prom.Counter("function_calls_total", "Number of calls to user function", ["method"])
    failures = prom.Counter("function_failures_total", "Number of exceptions in user function", ["method"])

    logged = requestlogger.WSGILogger(
        app, [logging.StreamHandler(stream=sys.stdout)], requestlogger.ApacheFormatter()
    )
    bottle.run(logged, server="cheroot", host="127.0.0.1", port=port, numthreads=10, quiet=True)

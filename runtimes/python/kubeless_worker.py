"""Kubeless Python worker: loads the user's handler once and answers framed
requests from the runtime host (kubeless-runtime) over a Unix socket.

Standard library only, and only cheap modules at start: every worker's
memory counts. The wire format is described in docs/runtime-host.md.

The host sets: KUBELESS_WORKER_SOCKET, KUBELESS_INSTALL_VOLUME (code dir,
also the working directory), MOD_NAME, FUNC_HANDLER, FUNC_TIMEOUT,
FUNC_RUNTIME, FUNC_MEMORY_LIMIT.
"""

import os
import socket
import struct
import sys
import threading

KIND_READY = 1
KIND_LOAD_FAILED = 2
KIND_REQUEST = 3
KIND_RESPONSE = 4

OUTCOME_OK = 0
OUTCOME_HANDLER_ERROR = 1
OUTCOME_BAD_REQUEST = 2

HTML = b"text/html; charset=utf-8"
JSON = b"application/json"


def blob(data):
    return struct.pack(">I", len(data)) + data


def send_frame(sock, payload):
    sock.sendall(struct.pack(">I", len(payload)) + payload)


class Headers(dict):
    """Request headers; lookups ignore case (names arrive lower-cased)."""

    def __getitem__(self, key):
        return dict.__getitem__(self, key.lower())

    def get(self, key, default=None):
        return dict.get(self, key.lower(), default)

    def __contains__(self, key):
        return dict.__contains__(self, key.lower())


def is_json(content_type):
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class Request:
    """The native request object in event['extensions']['request']."""

    def __init__(self, method, path, query_string, headers, body):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self._query = None

    @property
    def url(self):
        host = self.headers.get("host", "localhost")
        proto = self.headers.get("x-forwarded-proto", "http")
        url = "%s://%s%s" % (proto, host, self.path)
        return url + "?" + self.query_string if self.query_string else url

    @property
    def query(self):
        # urllib.parse is imported on first use to keep idle workers small.
        if self._query is None:
            from urllib.parse import parse_qsl

            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    @property
    def json(self):
        if not is_json(self.content_type) or not self.body:
            return None
        import json

        return json.loads(self.body)

    def get_header(self, name, default=None):
        return self.headers.get(name, default)


def decode_request(payload, unpack_from=struct.unpack_from):
    # Offsets into the payload instead of a reader object: this runs for
    # every request, and attribute lookups and calls dominate its cost.
    (req_id, n) = unpack_from(">QI", payload, 1)
    pos = 13
    method = payload[pos : pos + n].decode("utf-8", "replace")
    pos += n
    (n,) = unpack_from(">I", payload, pos)
    pos += 4
    path = payload[pos : pos + n].decode("utf-8", "replace")
    pos += n
    (n,) = unpack_from(">I", payload, pos)
    pos += 4
    query = payload[pos : pos + n].decode("utf-8", "replace")
    pos += n
    (count,) = unpack_from(">I", payload, pos)
    pos += 4
    headers = Headers()
    for _ in range(count):
        (n,) = unpack_from(">I", payload, pos)
        pos += 4
        name = payload[pos : pos + n].decode("latin-1")
        pos += n
        (n,) = unpack_from(">I", payload, pos)
        pos += 4
        value = payload[pos : pos + n].decode("latin-1")
        pos += n
        if name in headers:
            # Repeated headers fold into one value, as HTTP allows.
            value = dict.__getitem__(headers, name) + ", " + value
        dict.__setitem__(headers, name, value)
    (n,) = unpack_from(">I", payload, pos)
    pos += 4
    body = payload[pos : pos + n]
    if pos + n != len(payload):
        raise ValueError("truncated frame" if pos + n > len(payload) else "trailing bytes in frame")
    return req_id, Request(method, path, query, headers, body)


def encode_response(req_id, outcome, status=200, headers=(), body=b"", error=""):
    parts = [
        bytes([KIND_RESPONSE]),
        struct.pack(">QBHI", req_id, outcome, status, len(headers)),
    ]
    for name, value in headers:
        parts.append(blob(name.encode("latin-1")))
        parts.append(blob(value))
    parts.append(blob(body))
    parts.append(blob(error.encode("utf-8")))
    return b"".join(parts)


def to_body(value):
    """Turns a handler's return value into (content type, body bytes)."""
    if value is None:
        return HTML, b""
    if isinstance(value, str):
        return HTML, value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return HTML, bytes(value)
    if isinstance(value, (dict, list)):
        import json

        return JSON, json.dumps(value).encode("utf-8")
    return HTML, str(value).encode("utf-8")


def to_header_value(value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1")


def build_response(result):
    status = 200
    extra = None
    # Beyond Kubeless: (body, status) and (body, status, headers) tuples.
    if isinstance(result, tuple) and len(result) in (2, 3) and isinstance(result[1], int):
        if len(result) == 3:
            extra = result[2]
        status = result[1]
        result = result[0]
    content_type, body = to_body(result)
    if not extra:
        return status, [("content-type", content_type)], body
    headers = [(str(k), to_header_value(v)) for k, v in dict(extra).items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", content_type))
    return status, headers, body


def main():
    sock_path = os.environ["KUBELESS_WORKER_SOCKET"]
    code_dir = os.environ.get("KUBELESS_INSTALL_VOLUME", "/kubeless")
    mod_name = os.environ["MOD_NAME"]
    func_name = os.environ["FUNC_HANDLER"]

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    stream = sock.makefile("rb")

    # The worker script's own directory must not shadow user modules; the
    # code dir (and dependencies installed with pip --prefix) come first.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    site = os.path.join(code_dir, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    if os.path.isdir(site):
        # addsitedir also honours .pth files written by pip --prefix.
        import site as site_module

        site_module.addsitedir(site)
        sys.path.remove(site)
        sys.path.insert(0, site)
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)

    handler, reason = load(mod_name, func_name, code_dir)
    if handler is None:
        send_frame(sock, bytes([KIND_LOAD_FAILED]) + blob(reason.encode("utf-8")))
        sys.stdout.flush()
        os._exit(3)
    send_frame(sock, bytes([KIND_READY]))

    context = {
        "function-name": getattr(handler, "__name__", func_name),
        "timeout": float(os.environ.get("FUNC_TIMEOUT", "180")),
        "runtime": os.environ.get("FUNC_RUNTIME", ""),
        "memory-limit": os.environ.get("FUNC_MEMORY_LIMIT", ""),
    }

    # Requests are read on the main thread: handing each one over from a
    # reader thread cost two thread switches per request. A watcher thread
    # only waits for the host to hang up (POLLRDHUP never fires for data),
    # so the worker exits at once when the host goes away, even while the
    # handler is busy, instead of lingering as an orphan.
    threading.Thread(target=watch_host, args=(sock,), name="kubeless-host-watch", daemon=True).start()

    read = stream.read
    unpack = struct.unpack
    while True:
        head = read(4)
        if len(head) < 4:
            os._exit(0)
        (n,) = unpack(">I", head)
        payload = read(n)
        if len(payload) < n:
            os._exit(0)
        if payload[0] != KIND_REQUEST:
            sys.stderr.write("kubeless worker: unexpected message kind %d\n" % payload[0])
            os._exit(2)
        req_id, request = decode_request(payload)
        send_frame(sock, invoke(handler, context, req_id, request))


def watch_host(sock):
    """Exits the process when the host closes its end of the socket."""
    import select

    poller = select.poll()
    poller.register(sock.fileno(), getattr(select, "POLLRDHUP", 0x2000))
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        except OSError:
            break
        # Only hang-up bits are registered; POLLHUP/POLLERR always report.
        if events:
            break
    os._exit(0)


def invoke(handler, context, req_id, request):
    # Names arrive lower-cased: plain dict lookups skip Headers' lower().
    get = dict.get
    headers = request.headers
    content_type = get(headers, "content-type")
    data = request.body
    if data and is_json(content_type):
        import json

        try:
            data = json.loads(data)
        except ValueError as e:
            return encode_response(req_id, OUTCOME_BAD_REQUEST, 400, error="Invalid JSON in request body: %s\n" % e)
    event = {
        "data": data,
        "event-id": get(headers, "event-id"),
        "event-type": get(headers, "event-type"),
        "event-time": get(headers, "event-time"),
        "event-namespace": get(headers, "event-namespace"),
        "extensions": {"request": request},
    }
    try:
        result = handler(event, context)
        status, out_headers, body = build_response(result)
        # Encoding is inside the try so an unusable return value (a status
        # out of range, a header that is not latin-1) is the handler's error.
        return encode_response(req_id, OUTCOME_OK, status, out_headers, body)
    except Exception:
        import traceback

        sys.stderr.write("Function returned an exception\n")
        traceback.print_exc()
        sys.stderr.flush()
        return encode_response(req_id, OUTCOME_HANDLER_ERROR, 500)


def load(mod_name, func_name, code_dir):
    """Imports the module once; returns (handler, None) or (None, reason)."""
    import importlib

    try:
        module = importlib.import_module(mod_name)
    except SyntaxError as e:
        where = "%s, line %s" % (os.path.basename(e.filename or mod_name + ".py"), e.lineno)
        return None, "%s: %s (%s)" % (type(e).__name__, e.msg, where)
    except ModuleNotFoundError as e:
        if e.name == mod_name:
            return None, 'module "%s" not found in %s' % (mod_name, code_dir)
        return None, describe(e)
    except BaseException as e:  # module-level code may raise anything, even SystemExit
        return None, describe(e)
    handler = getattr(module, func_name, None)
    if handler is None:
        return None, 'module "%s" has no function "%s"' % (mod_name, func_name)
    if not callable(handler):
        return None, '"%s" in module "%s" is not callable' % (func_name, mod_name)
    return handler, None


def describe(e):
    """One line: exception type, message and the innermost user location."""
    text = "%s: %s" % (type(e).__name__, e)
    tb = e.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is not None:
        code = last.tb_frame.f_code
        text += " (%s, line %d)" % (os.path.basename(code.co_filename), last.tb_lineno)
    return text.replace("\n", " ")


if __name__ == "__main__":
    main()

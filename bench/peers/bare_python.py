"""The Python ceiling: the benchmark handler behind the smallest server a
Python developer could write without a framework (asyncio streams, HTTP/1.1
keep-alive, one process, one thread).

It builds the same event the platform builds (JSON bodies parsed) and maps
return values the same way (str -> text/html, dict/list -> JSON), so the
only thing missing compared with a function behind the gateway is the
platform itself.

Usage: bare_python.py PORT HANDLER_FILE HANDLER_NAME
"""

import asyncio
import importlib.util
import json
import sys


def load(path, name):
    spec = importlib.util.spec_from_file_location("handlers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def render(result):
    if isinstance(result, (dict, list)):
        return b"application/json", json.dumps(result).encode()
    if isinstance(result, bytes):
        return b"text/html; charset=utf-8", result
    if result is None:
        return b"text/html; charset=utf-8", b""
    return b"text/html; charset=utf-8", str(result).encode()


def serve(port, handler):
    context = {"function-name": handler.__name__, "timeout": 180.0}

    async def connection(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                data = body
                if headers.get("content-type", "").split(";")[0].strip() == "application/json" and body:
                    data = json.loads(body)
                event = {"data": data, "event-id": headers.get("event-id")}
                ctype, out = render(handler(event, context))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (ctype, len(out), out)
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    serve(int(sys.argv[1]), load(sys.argv[2], sys.argv[3]))

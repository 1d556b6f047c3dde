<?php
/*
 * Kubeless PHP worker: loads the user's handler once and answers framed
 * requests from the runtime host (kubeless-runtime) over a Unix socket.
 *
 * Core PHP only. The wire format is described in docs/runtime-host.md. The
 * host sets KUBELESS_WORKER_SOCKET, KUBELESS_INSTALL_VOLUME (code dir, also
 * the working directory), MOD_NAME, FUNC_HANDLER, FUNC_TIMEOUT,
 * FUNC_RUNTIME, FUNC_MEMORY_LIMIT.
 *
 * Caveat: PHP has no threads, so a worker stuck in a handler notices a
 * vanished host only when the handler returns (the host kills the worker's
 * process group in every other case).
 */

namespace Kubeless;

const KIND_READY = 1;
const KIND_LOAD_FAILED = 2;
const KIND_REQUEST = 3;
const KIND_RESPONSE = 4;
const OUTCOME_OK = 0;
const OUTCOME_HANDLER_ERROR = 1;
const OUTCOME_BAD_REQUEST = 2;

/** A PSR-7-like body stream: write() appends, (string) reads. */
final class Stream
{
    private $data;

    public function __construct(string $data = '')
    {
        $this->data = $data;
    }

    public function write(string $s): int
    {
        $this->data .= $s;
        return strlen($s);
    }

    public function getContents(): string
    {
        return $this->data;
    }

    public function getSize(): int
    {
        return strlen($this->data);
    }

    public function __toString(): string
    {
        return $this->data;
    }
}

/** The request in $event->extensions->request: a PSR-7-like subset. */
final class Request
{
    private $method;
    private $path;
    private $query;
    private $headers;
    private $body;

    public function __construct(string $method, string $path, string $query, array $headers, string $body)
    {
        $this->method = $method;
        $this->path = $path;
        $this->query = $query;
        $this->headers = $headers;
        $this->body = new Stream($body);
    }

    public function getMethod(): string
    {
        return $this->method;
    }

    public function getPath(): string
    {
        return $this->path;
    }

    public function getUri(): string
    {
        $host = $this->headers['host'] ?? 'localhost';
        return 'http://' . $host . $this->path . ($this->query === '' ? '' : '?' . $this->query);
    }

    public function getQueryString(): string
    {
        return $this->query;
    }

    public function getQueryParams(): array
    {
        parse_str($this->query, $out);
        return $out;
    }

    /** Header names are lower-case. */
    public function getHeaders(): array
    {
        return array_map(function ($v) {
            return [$v];
        }, $this->headers);
    }

    public function hasHeader(string $name): bool
    {
        return isset($this->headers[strtolower($name)]);
    }

    public function getHeader(string $name): array
    {
        $v = $this->headers[strtolower($name)] ?? null;
        return $v === null ? [] : [$v];
    }

    public function getHeaderLine(string $name): string
    {
        return $this->headers[strtolower($name)] ?? '';
    }

    public function getBody(): Stream
    {
        return $this->body;
    }
}

/**
 * The response in $event->extensions->response, PSR-7 style (immutable):
 * return $event->extensions->response->withStatus(201)->withHeader('X', 'y');
 * Text written to getBody() of the returned response is its body.
 */
final class Response
{
    private $status = 200;
    private $headers = [];
    private $body;

    public function __construct()
    {
        $this->body = new Stream();
    }

    public function withStatus(int $code, string $reason = ''): Response
    {
        $r = clone $this;
        $r->status = $code;
        return $r;
    }

    public function withHeader(string $name, $value): Response
    {
        $r = clone $this;
        foreach (array_keys($r->headers) as $k) {
            if (strcasecmp($k, $name) === 0) {
                unset($r->headers[$k]);
            }
        }
        $r->headers[$name] = is_array($value) ? array_values($value) : [(string) $value];
        return $r;
    }

    public function withAddedHeader(string $name, $value): Response
    {
        $r = clone $this;
        foreach ((array) $value as $v) {
            $r->headers[$name][] = (string) $v;
        }
        return $r;
    }

    public function withBody(Stream $body): Response
    {
        $r = clone $this;
        $r->body = $body;
        return $r;
    }

    public function getStatusCode(): int
    {
        return $this->status;
    }

    public function getHeaders(): array
    {
        return $this->headers;
    }

    public function getBody(): Stream
    {
        return $this->body;
    }
}

function blob(string $data): string
{
    return pack('N', strlen($data)) . $data;
}

function send_frame($sock, string $payload): void
{
    $data = pack('N', strlen($payload)) . $payload;
    while ($data !== '') {
        $n = fwrite($sock, $data);
        if ($n === false || $n === 0) {
            exit(0);
        }
        $data = substr($data, $n);
    }
    fflush($sock);
}

function read_exact($sock, int $n): ?string
{
    $out = '';
    while (strlen($out) < $n) {
        $chunk = fread($sock, $n - strlen($out));
        if ($chunk === false || $chunk === '') {
            if (feof($sock)) {
                return null;
            }
            continue;
        }
        $out .= $chunk;
    }
    return $out;
}

function decode_request(string $p): array
{
    $pos = 1;
    $take = function (int $n) use ($p, &$pos): string {
        if ($pos + $n > strlen($p)) {
            throw new \RuntimeException('truncated frame');
        }
        $out = substr($p, $pos, $n);
        $pos += $n;
        return $out;
    };
    $u32 = function () use ($take): int {
        return unpack('N', $take(4))[1];
    };
    $blob = function () use ($take, $u32): string {
        return $take($u32());
    };
    $id = $take(8);
    $method = $blob();
    $path = $blob();
    $query = $blob();
    $headers = [];
    for ($i = $u32(); $i > 0; $i--) {
        $name = $blob();
        $value = $blob();
        // Repeated headers fold into one value, as HTTP allows.
        $headers[$name] = isset($headers[$name]) ? $headers[$name] . ', ' . $value : $value;
    }
    $body = $blob();
    return [$id, new Request($method, $path, $query, $headers, $body)];
}

function encode_response(string $id, int $outcome, int $status = 200, array $headers = [], string $body = '', string $error = ''): string
{
    if ($status < 0 || $status > 65535) {
        $status = 500;
    }
    $out = chr(KIND_RESPONSE) . $id . chr($outcome) . pack('nN', $status, count($headers));
    foreach ($headers as [$name, $value]) {
        $out .= blob($name) . blob($value);
    }
    return $out . blob($body) . blob($error);
}

function is_json(?string $contentType): bool
{
    if ($contentType === null) {
        return false;
    }
    return strtolower(trim(explode(';', $contentType, 2)[0])) === 'application/json';
}

function build_response($result): array
{
    // http_response_code() works in the CLI too: the idiomatic way to set
    // only the status.
    $code = http_response_code();
    $status = is_int($code) ? $code : 200;
    $headers = [];
    $type = 'text/html; charset=UTF-8';
    if ($result instanceof Response) {
        $status = $result->getStatusCode();
        foreach ($result->getHeaders() as $name => $values) {
            foreach ($values as $v) {
                $headers[] = [(string) $name, $v];
            }
        }
        $body = (string) $result->getBody();
    } elseif ($result === null) {
        $body = '';
    } elseif (is_string($result)) {
        $body = $result;
    } elseif (is_array($result) || is_object($result) && !method_exists($result, '__toString')) {
        $body = json_encode($result, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
        $type = 'application/json';
    } elseif (is_bool($result)) {
        $body = $result ? '1' : '';
    } else {
        $body = (string) $result;
    }
    $hasType = false;
    foreach ($headers as [$name, $_]) {
        $hasType = $hasType || strcasecmp($name, 'content-type') === 0;
    }
    if (!$hasType) {
        $headers[] = ['content-type', $type];
    }
    return [$status, $headers, $body];
}

function invoke(string $func, $context, string $id, Request $request): string
{
    $data = (string) $request->getBody();
    if ($data !== '' && is_json($request->getHeaderLine('content-type'))) {
        $data = json_decode($data);
        if (json_last_error() !== JSON_ERROR_NONE) {
            return encode_response($id, OUTCOME_BAD_REQUEST, 400, [], '', 'Invalid JSON in request body: ' . json_last_error_msg() . "\n");
        }
    }
    $event = (object) [
        'data' => $data,
        'event-id' => $request->hasHeader('event-id') ? $request->getHeaderLine('event-id') : null,
        'event-type' => $request->hasHeader('event-type') ? $request->getHeaderLine('event-type') : null,
        'event-time' => $request->hasHeader('event-time') ? $request->getHeaderLine('event-time') : null,
        'event-namespace' => $request->hasHeader('event-namespace') ? $request->getHeaderLine('event-namespace') : null,
        'extensions' => (object) ['request' => $request, 'response' => new Response()],
    ];
    http_response_code(200);
    try {
        $result = $func($event, $context);
        [$status, $headers, $body] = build_response($result);
        return encode_response($id, OUTCOME_OK, $status, $headers, $body);
    } catch (\Throwable $e) {
        fwrite(STDERR, "Function returned an exception\n" . $e . "\n");
        return encode_response($id, OUTCOME_HANDLER_ERROR, 500);
    }
}

function load(string $codeDir, string $mod, string $func): ?string
{
    $path = $codeDir . '/' . $mod . '.php';
    if (!is_file($path)) {
        return "module \"$mod\" not found in $codeDir";
    }
    try {
        // Functions defined by a composer autoloader are available to the
        // handler without an explicit require (Kubeless users required
        // vendor/autoload.php themselves; doing it twice is harmless).
        if (is_file($codeDir . '/vendor/autoload.php')) {
            require_once $codeDir . '/vendor/autoload.php';
        }
        ob_start();
        require_once $path;
        $out = ob_get_clean();
        if ($out !== '' && $out !== false) {
            fwrite(STDOUT, $out);
        }
    } catch (\Throwable $e) {
        return get_class($e) . ': ' . $e->getMessage() . ' (' . basename($e->getFile()) . ', line ' . $e->getLine() . ')';
    }
    if (!function_exists($func)) {
        return "module \"$mod\" has no function \"$func\"";
    }
    return null;
}

function main(): void
{
    ini_set('display_errors', 'stderr');
    ini_set('log_errors', '0');
    $sock = stream_socket_client('unix://' . getenv('KUBELESS_WORKER_SOCKET'), $errno, $errstr);
    if ($sock === false) {
        fwrite(STDERR, "kubeless worker: connect to the host: $errstr\n");
        exit(1);
    }
    stream_set_blocking($sock, true);
    $codeDir = getenv('KUBELESS_INSTALL_VOLUME') ?: '/kubeless';
    $mod = getenv('MOD_NAME');
    $func = getenv('FUNC_HANDLER');
    chdir($codeDir);

    $reason = load($codeDir, $mod, $func);
    if ($reason !== null) {
        send_frame($sock, chr(KIND_LOAD_FAILED) . blob(str_replace("\n", ' ', $reason)));
        exit(3);
    }
    send_frame($sock, chr(KIND_READY));

    $context = (object) [
        'function-name' => $func,
        'timeout' => getenv('FUNC_TIMEOUT') ?: '180',
        'runtime' => getenv('FUNC_RUNTIME') ?: '',
        'memory-limit' => getenv('FUNC_MEMORY_LIMIT') ?: '',
    ];
    while (true) {
        $head = read_exact($sock, 4);
        if ($head === null) {
            exit(0);
        }
        $n = unpack('N', $head)[1];
        $payload = read_exact($sock, $n);
        if ($payload === null) {
            exit(0);
        }
        if (ord($payload[0]) !== KIND_REQUEST) {
            fwrite(STDERR, 'kubeless worker: unexpected message kind ' . ord($payload[0]) . "\n");
            exit(2);
        }
        [$id, $request] = decode_request($payload);
        send_frame($sock, invoke($func, $context, $id, $request));
    }
}

main();

package io.kubeless.runtime;

import io.kubeless.Context;
import io.kubeless.Event;
import io.kubeless.Response;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;

/**
 * The Java language worker of the kubeless-runtime host: loads
 * {@code io.kubeless.<MOD_NAME>} once, reports READY (or LOAD_FAILED), and
 * answers one framed REQUEST at a time by calling
 * {@code FUNC_HANDLER(io.kubeless.Event, io.kubeless.Context)}. The wire
 * format is described in docs/runtime-host.md.
 */
public final class KubelessWorker {
    private static final int READY = 1;
    private static final int LOAD_FAILED = 2;
    private static final int REQUEST = 3;
    private static final int RESPONSE = 4;

    private KubelessWorker() {}

    public static void main(String[] args) throws Exception {
        SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        channel.connect(UnixDomainSocketAddress.of(System.getenv("KUBELESS_WORKER_SOCKET")));
        // Not Channels.newInputStream/newOutputStream: both lock the
        // channel's blocking lock, so a blocked read would stall every write.
        InputStream in = new InputStream() {
            @Override
            public int read() throws IOException {
                byte[] one = new byte[1];
                return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
            }

            @Override
            public int read(byte[] b, int off, int len) throws IOException {
                return channel.read(ByteBuffer.wrap(b, off, len));
            }
        };
        OutputStream out = new OutputStream() {
            @Override
            public void write(int b) throws IOException {
                write(new byte[] {(byte) b}, 0, 1);
            }

            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                ByteBuffer buf = ByteBuffer.wrap(b, off, len);
                while (buf.hasRemaining()) {
                    channel.write(buf);
                }
            }
        };
        String module = env("MOD_NAME");
        String function = env("FUNC_HANDLER");

        Object target = null;
        Method method;
        try {
            Class<?> cls = Class.forName("io.kubeless." + module);
            method = cls.getMethod(function, Event.class, Context.class);
            if (!Modifier.isStatic(method.getModifiers())) {
                target = cls.getConstructor().newInstance();
            }
        } catch (ClassNotFoundException e) {
            loadFailed(out, "class io.kubeless." + module + " not found (the file must declare package io.kubeless and class " + module + ")");
            return;
        } catch (NoSuchMethodException e) {
            loadFailed(out, "class io.kubeless." + module + " has no public method " + function + "(io.kubeless.Event, io.kubeless.Context) or no public no-argument constructor");
            return;
        } catch (InvocationTargetException e) {
            loadFailed(out, describe(e.getCause()));
            return;
        } catch (Throwable e) {
            loadFailed(out, describe(e));
            return;
        }
        writeFrame(out, new byte[] {READY});

        Context context = new Context(function, env("FUNC_TIMEOUT"), env("FUNC_RUNTIME"), env("FUNC_MEMORY_LIMIT"));

        // The socket is read on its own thread so the worker exits as soon
        // as the host goes away, even while a handler is still running.
        BlockingQueue<byte[]> requests = new ArrayBlockingQueue<>(1);
        Thread reader = new Thread(() -> {
            DataInputStream data = new DataInputStream(in);
            try {
                while (true) {
                    byte[] payload = new byte[data.readInt()];
                    data.readFully(payload);
                    requests.put(payload);
                }
            } catch (EOFException e) {
                // The host closed the socket.
            } catch (IOException | InterruptedException e) {
                System.err.println("kubeless worker: " + e);
            }
            Runtime.getRuntime().halt(0);
        }, "kubeless-socket");
        reader.setDaemon(true);
        reader.start();

        while (true) {
            byte[] payload = requests.take();
            if (payload.length == 0 || payload[0] != REQUEST) {
                System.err.println("kubeless worker: unexpected message");
                Runtime.getRuntime().halt(2);
            }
            writeFrame(out, handle(method, target, context, payload));
        }
    }

    private static byte[] handle(Method method, Object target, Context context, byte[] payload) throws IOException {
        Reader r = new Reader(payload);
        long id = r.u64();
        String httpMethod = r.string();
        String path = r.string();
        String query = r.string();
        int n = r.u32();
        Map<String, String> headers = new HashMap<>();
        for (int i = 0; i < n; i++) {
            String name = r.string();
            String value = new String(r.blob(), StandardCharsets.ISO_8859_1);
            headers.merge(name, value, (a, b) -> a + ", " + b);
        }
        byte[] body = r.blob();
        Event event = new Event(
                new String(body, StandardCharsets.UTF_8),
                headers.get("event-id"),
                headers.get("event-type"),
                headers.get("event-time"),
                headers.get("event-namespace"));
        event.Method = httpMethod;
        event.Path = path;
        event.Query = query;
        event.Headers = headers;
        event.Body = body;
        try {
            Object result = method.invoke(target, event, context);
            return response(id, result);
        } catch (InvocationTargetException e) {
            System.err.println("Function returned an exception");
            e.getCause().printStackTrace();
        } catch (Throwable e) {
            System.err.println("Function returned an exception");
            e.printStackTrace();
        }
        System.err.flush();
        return encode(id, 1, 500, List.of(), new byte[0]);
    }

    private static byte[] response(long id, Object result) throws IOException {
        if (result instanceof Response) {
            Response r = (Response) result;
            return encode(id, 0, r.getStatus(), r.getHeaders(), r.getBody());
        }
        if (result instanceof byte[]) {
            return encode(id, 0, 200, List.of(), (byte[]) result);
        }
        byte[] body = result == null ? new byte[0] : result.toString().getBytes(StandardCharsets.UTF_8);
        return encode(id, 0, 200, List.of(), body);
    }

    private static byte[] encode(long id, int outcome, int status, List<String[]> headers, byte[] body) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream(64 + body.length);
        DataOutputStream d = new DataOutputStream(buf);
        d.writeByte(RESPONSE);
        d.writeLong(id);
        d.writeByte(outcome);
        d.writeShort(status < 0 || status > 65535 ? 500 : status);
        d.writeInt(headers.size());
        for (String[] h : headers) {
            blob(d, h[0].getBytes(StandardCharsets.ISO_8859_1));
            blob(d, h[1].getBytes(StandardCharsets.ISO_8859_1));
        }
        blob(d, body);
        blob(d, new byte[0]);
        d.flush();
        return buf.toByteArray();
    }

    private static void blob(DataOutputStream d, byte[] b) throws IOException {
        d.writeInt(b.length);
        d.write(b);
    }

    private static void loadFailed(OutputStream out, String reason) throws IOException {
        byte[] text = reason.replace('\n', ' ').getBytes(StandardCharsets.UTF_8);
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        DataOutputStream d = new DataOutputStream(buf);
        d.writeByte(LOAD_FAILED);
        blob(d, text);
        writeFrame(out, buf.toByteArray());
        System.exit(3);
    }

    private static String describe(Throwable e) {
        String text = e.getClass().getName() + ": " + e.getMessage();
        for (StackTraceElement el : e.getStackTrace()) {
            if (el.getClassName().startsWith("io.kubeless.") && !el.getClassName().startsWith("io.kubeless.runtime.")) {
                return text + " (" + el.getFileName() + ", line " + el.getLineNumber() + ")";
            }
        }
        return text;
    }

    private static synchronized void writeFrame(OutputStream out, byte[] payload) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream(payload.length + 4);
        new DataOutputStream(buf).writeInt(payload.length);
        buf.write(payload);
        out.write(buf.toByteArray());
        out.flush();
    }

    private static String env(String name) {
        String v = System.getenv(name);
        return v == null ? "" : v;
    }

    /** Decodes the fields of one request payload (after the kind byte). */
    private static final class Reader {
        private final byte[] buf;
        private int pos = 1;

        Reader(byte[] buf) {
            this.buf = buf;
        }

        private void need(int n) throws IOException {
            if (n < 0 || pos + n > buf.length) {
                throw new IOException("truncated request frame");
            }
        }

        long u64() throws IOException {
            need(8);
            long v = 0;
            for (int i = 0; i < 8; i++) {
                v = (v << 8) | (buf[pos++] & 0xff);
            }
            return v;
        }

        int u32() throws IOException {
            need(4);
            int v = 0;
            for (int i = 0; i < 4; i++) {
                v = (v << 8) | (buf[pos++] & 0xff);
            }
            return v;
        }

        byte[] blob() throws IOException {
            int n = u32();
            need(n);
            byte[] out = new byte[n];
            System.arraycopy(buf, pos, out, 0, n);
            pos += n;
            return out;
        }

        String string() throws IOException {
            return new String(blob(), StandardCharsets.UTF_8);
        }
    }
}

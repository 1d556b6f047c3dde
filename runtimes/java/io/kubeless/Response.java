package io.kubeless;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Beyond Kubeless: a handler declared to return {@code Response} (or
 * {@code Object}) sets the status code, headers and body:
 * {@code return Response.status(201).header("Location", "/x").body("made");}
 */
public final class Response {
    private int status = 200;
    private final List<String[]> headers = new ArrayList<>();
    private byte[] body = new byte[0];

    public static Response status(int status) {
        Response r = new Response();
        r.status = status;
        return r;
    }

    public static Response ok(String body) {
        return status(200).body(body);
    }

    public Response header(String name, String value) {
        headers.add(new String[] {name, value});
        return this;
    }

    public Response body(String body) {
        this.body = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        return this;
    }

    public Response body(byte[] body) {
        this.body = body == null ? new byte[0] : body;
        return this;
    }

    public int getStatus() {
        return status;
    }

    public List<String[]> getHeaders() {
        return headers;
    }

    public byte[] getBody() {
        return body;
    }
}

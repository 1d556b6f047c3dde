package io.kubeless;

import java.util.Collections;
import java.util.Map;

/**
 * One invocation, with the fields of Kubeless's {@code io.kubeless.Event}
 * ({@code Data} is the request body as UTF-8 text) plus the request itself:
 * method, path, query string, headers (lower-case names) and raw body.
 */
public class Event {
    public String Data;
    public String EventID;
    public String EventType;
    public String EventTime;
    public String EventNamespace;

    public String Method = "";
    public String Path = "/";
    public String Query = "";
    public Map<String, String> Headers = Collections.emptyMap();
    public byte[] Body = new byte[0];

    public Event(String data, String eventId, String eventType, String eventTime, String eventNamespace) {
        this.Data = data;
        this.EventID = eventId;
        this.EventType = eventType;
        this.EventTime = eventTime;
        this.EventNamespace = eventNamespace;
    }

    /** A request header (case-insensitive), or null. */
    public String header(String name) {
        return Headers.get(name.toLowerCase(java.util.Locale.ROOT));
    }
}
